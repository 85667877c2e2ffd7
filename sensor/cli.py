"""The ``dicom-sensor`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def _cmd_dissectors(_: argparse.Namespace) -> int:
    from dissectors.registry import load_dissectors

    for dissector in load_dissectors():
        print(f"{dissector.name}\t{type(dissector).__module__}.{type(dissector).__qualname__}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    print(
        "dicom-sensor demo: the offline pipeline (`dicom-sensor read`) has not landed yet;\n"
        "today the demo only lists the installed dissectors. See README.md for status.",
        file=sys.stderr,
    )
    return _cmd_dissectors(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="dicom-sensor", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dicom-sensor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dissectors", help="list the installed protocol dissectors")
    p.set_defaults(func=_cmd_dissectors)
    p = sub.add_parser("demo", help="run the main job on the bundled captures")
    p.add_argument("--out", default="out", help="folder for the outputs")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
