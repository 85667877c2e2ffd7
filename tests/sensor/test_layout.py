"""The tree shows the design: rooms import downward, never in a circle, never private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A packet's path, top to bottom: a module may import its own room and the rooms above it.
RANKS = {
    "sensor.timefmt": 0,
    "sensor.counters": 0,
    "sensor.capture": 1,
    "sensor.flow": 2,
    "sensor.policy": 3,
    "sensor.outputs": 4,
    "sensor.pipeline": 5,
    "sensor.commands": 6,
    "sensor.cli": 7,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import, nested ones included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: list[tuple[str, list[str], int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            # `from package import module` imports the module.
            modules = [n for n in names if (ROOT / Path(*target.split("."), f"{n}.py")).exists()]
            out.extend((f"{target}.{m}", [], node.lineno) for m in modules)
            rest = [n for n in names if n not in modules]
            if rest:
                out.append((target, rest, node.lineno))
    return out


def sensor_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / "sensor").rglob("*.py"))}


def rank(module: str) -> int:
    for prefix, value in RANKS.items():
        if module == prefix or module.startswith(prefix + "."):
            return value
    raise AssertionError(f"{module} is in no room; add it to RANKS")


def graph() -> dict[str, set[str]]:
    mods = sensor_modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for target, _, _ in imports_of(path):
            if target in mods and target != mod:
                edges[mod].add(target)
    return edges


def test_every_module_is_in_a_room() -> None:
    for mod in sensor_modules():
        if mod != "sensor":
            rank(mod)


def test_rooms_import_downward_only() -> None:
    bad = []
    for mod, path in sensor_modules().items():
        if mod == "sensor":
            continue
        for target, _, line in imports_of(path):
            known = target.startswith("sensor.") and target in sensor_modules()
            if known and rank(target) > rank(mod):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mod} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_names_across_modules() -> None:
    bad = []
    for path in sensor_modules().values():
        for target, names, line in imports_of(path):
            if not (target.startswith("sensor") or target.startswith("dissectors")):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {private} from {target}")
    assert not bad, "\n".join(bad)


def test_dissectors_never_import_the_sensor() -> None:
    for path in sorted((ROOT / "dissectors").rglob("*.py")):
        for target, _, line in imports_of(path):
            assert not target.startswith("sensor"), f"{path}:{line} imports {target}"


@pytest.mark.parametrize("room", ["capture", "flow", "policy", "outputs", "commands"])
def test_each_room_says_what_it_owns_and_may_import(room: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / "sensor" / room / "__init__.py").read_text()))
    assert doc and "import" in doc, f"sensor/{room}/__init__.py needs a docstring naming imports"


def test_the_checker_sees_a_cycle_and_a_private_import(tmp_path: Path) -> None:
    """The checks above can fail: a planted upward import is found."""
    planted = ROOT / "sensor" / "capture" / "_planted_for_test.py"
    planted.write_text("from ..pipeline import Pipeline\nfrom .decode import _fast_ethernet\n")
    try:
        with pytest.raises(AssertionError):
            test_rooms_import_downward_only()
        with pytest.raises(AssertionError):
            test_no_private_names_across_modules()
    finally:
        planted.unlink()
