"""Render a picture of the dicom-sensor dashboard's panels, without Grafana.

    python deploy/grafana/render-preview.py [OUT.png]     # needs matplotlib, PyYAML, promtool,
                                                          # prometheus (Debian package)

Grafana is not packaged by Debian, so this draws the panels of dicom-sensor.json itself:
it writes three hours of SYNTHETIC metrics for two sensors (a working day's imaging
traffic, a kernel drop burst, and a perimeter probe from the internet with an AE title
brute force) as OpenMetrics, backfills them into a TSDB with `promtool tsdb
create-blocks-from openmetrics`, starts Prometheus on 127.0.0.1 over that TSDB, runs every
panel's PromQL expression (Grafana variables substituted) through its HTTP API, and lays the
results out on the dashboard's grid with matplotlib. The data are made up; the queries,
layout, units and legends are the dashboard's own.
"""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "dicom-sensor.json"
STEP = 30  # seconds between synthetic scrapes
HOURS = 3
DIMSE_MIX = (  # command, status class, messages per stored object
    ("C-STORE-RQ", "none", 1), ("C-STORE-RSP", "success", 0.99), ("C-STORE-RSP", "warning", 0.01),
    ("C-FIND-RQ", "none", 0.05), ("C-FIND-RSP", "pending", 0.4), ("C-FIND-RSP", "success", 0.05),
    ("C-MOVE-RQ", "none", 0.01), ("C-MOVE-RSP", "success", 0.01), ("C-ECHO-RQ", "none", 0.02),
    ("C-ECHO-RSP", "success", 0.02),
)  # fmt: skip
PROBE = HOURS * 60 - 8  # minute of the perimeter probe: its alerts still fire at the end


# ---------------------------------------------------------------- synthetic metrics
def synthesize(end: int) -> str:
    """OpenMetrics text: counters and gauges of two sensors, one sample per STEP."""
    rng = random.Random(7)
    start = end - HOURS * 3600
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]] = {}
    totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)

    def add(name: str, labels: dict[str, str], value: float, ts: int, gauge: bool = False) -> None:
        key = (name, tuple(sorted(labels.items())))
        if gauge:
            totals[key] = value
        else:
            totals[key] += value
        series.setdefault(key, []).append((ts, totals[key]))

    flows = {  # zone pair -> associations per minute, P-DATA bytes per association
        "imaging-core": {("radiology", "pacs"): (6, 40e6), ("wards", "pacs"): (3, 2e5),
                         ("radiology", "radiology"): (1, 5e6)},
        "pacs-dmz": {("pacs", "vna"): (2, 60e6), ("vpn-teleradiology", "pacs"): (0.5, 3e7),
                     ("internet", "pacs"): (0, 0)},
    }  # fmt: skip
    for t in range(start, end + 1, STEP):
        minute = (t - start) / 60
        day = 0.6 + 0.4 * abs(((minute / 90) % 2) - 1)  # a slow swell, not a flat line
        for sensor, pairs in flows.items():
            s = {"sensor": sensor, "job": "dicom-sensor", "instance": f"{sensor}:9464"}
            assoc = 0.0
            for (src, dst), (per_min, size) in pairs.items():
                n = rng.uniform(0.5, 1.5) * per_min * day * STEP / 60
                probe = sensor == "pacs-dmz" and PROBE <= minute < PROBE + 6 and src == "internet"
                if probe:
                    n = 4.0  # the brute force: rejected associations from outside
                assoc += n
                pair = {"source_zone": src, "destination_zone": dst}
                add("dicom_association_requests_total", s | pair, n, t)
                result = "rejected" if probe else "accepted"
                end_ = "aborted" if rng.random() < 0.02 else "released"
                add("dicom_associations_total", s | pair | {"result": result, "end": end_}, n, t)
                for direction, share in (("requestor", 0.97), ("acceptor", 0.03)):
                    add("dicom_pdata_bytes_total", s | pair | {"direction": direction},
                        n * size * share, t)  # fmt: skip
            stores = assoc * 40
            for cmd, status, k in DIMSE_MIX:
                add("dicom_dimse_messages_total", s | {"command": cmd, "status_class": status},
                    stores * k, t)  # fmt: skip
            for rule, sev in (("perimeter-inbound-probe", "medium"), ("ae-brute-force", "high"),
                              ("new-node", "low"), ("radiology-boundary", "low")):  # fmt: skip
                hit = 0.0
                if (
                    sensor == "pacs-dmz"
                    and rule == "perimeter-inbound-probe"
                    and PROBE <= minute < PROBE + 6
                ):
                    hit = 1.0
                if sensor == "pacs-dmz" and rule == "ae-brute-force" and minute == PROBE + 2:
                    hit = 1.0
                if sensor == "imaging-core" and rule == "new-node" and minute in (40, 41.5, 150):
                    hit = 1.0
                if sensor == "imaging-core" and rule == "radiology-boundary" and minute % 37 == 0:
                    hit = 1.0
                add("dicom_alerts_total", s | {"rule": rule, "severity": sev}, hit, t)
            pps = (9000 if sensor == "imaging-core" else 4000) * day * rng.uniform(0.9, 1.1)
            add("dicom_sensor_packets_total", s, pps * STEP, t)
            add("dicom_sensor_inspected_packets_total", s, pps * 0.7 * STEP, t)
            add("dicom_sensor_inspected_payload_bytes_total", s, pps * 0.7 * 900 * STEP, t)
            burst = sensor == "imaging-core" and 60 <= minute < 64
            add("dicom_sensor_capture_dropped_packets_total", s | {"where": "kernel"},
                rng.uniform(200, 900) * STEP if burst else 0, t)  # fmt: skip
            add("dicom_sensor_capture_dropped_packets_total", s | {"where": "interface"}, 0, t)
            add("dicom_sensor_reassembly_gaps_total", s, (40 if burst else 0.05) * STEP, t)
            add("dicom_sensor_reassembly_gap_bytes_total", s, (40e3 if burst else 30) * STEP, t)
            add("dicom_anomalies_total", s | {"reason": "gap"}, (40 if burst else 0.05) * STEP, t)
            add("dicom_anomalies_total", s | {"reason": "truncated"}, 0.01 * STEP, t)
            # a crafted sender on the DMZ: reserved PDV bits, then differing TCP overlaps
            crafted = sensor == "pacs-dmz" and 100 <= minute < 103
            add("dicom_anomalies_total", s | {"reason": "reserved-bits"}, 3.0 if crafted else 0, t)
            for reason, rate in (("retransmission", 0.4), ("overlap", 0.05),
                                 ("overlap-mismatch", 0.0), ("gap", 0.05)):  # fmt: skip
                n = 6.0 if crafted and reason == "overlap-mismatch" else rate * STEP
                add("dicom_sensor_stream_anomalies_total", s | {"reason": reason}, n, t)
                if reason == "overlap-mismatch":
                    add("dicom_anomalies_total", s | {"reason": reason}, n, t)
            add("dicom_alerts_total", s | {"rule": "stream-evasion", "severity": "medium"},
                1.0 if crafted and minute == 100 else 0, t)  # fmt: skip
            moves = assoc * 0.05 if sensor == "imaging-core" else 0.0
            add("dicom_move_decisions_total", s | {"reason": "answered-internal"}, moves, t)
            refused = 1.0 if sensor == "imaging-core" and minute == 120 else 0.0
            add("dicom_move_decisions_total", s | {"reason": "refused"}, refused, t)
            add("dicom_alerts_total", s | {"rule": "move-unknown-destination",
                "severity": "medium"}, refused, t)  # fmt: skip
            for reason in ("connection-closed", "timeout"):
                add("dicom_sensor_flows_closed_total", s | {"reason": reason},
                    assoc * (0.95 if reason == "connection-closed" else 0.05), t)  # fmt: skip
            add("dicom_sensor_flows_active", s, assoc * 3 + rng.uniform(0, 4), t, gauge=True)
            add("dicom_associations_active", s, assoc * 0.8, t, gauge=True)
            add("dicom_nodes", s, 42 if sensor == "imaging-core" else 9, t, gauge=True)
            add("dicom_sensor_last_packet_timestamp_seconds", s, t - rng.uniform(0, 0.5), t,
                gauge=True)  # fmt: skip
            add("dicom_sensor_build_info", s | {"version": "0.1.0"}, 1, t, gauge=True)
            add("up", s, 1, t, gauge=True)

    lines: list[str] = []
    by_name: dict[str, list[Any]] = defaultdict(list)
    for (name, labels), samples in series.items():
        by_name[name].append((labels, samples))
    for name, members in by_name.items():
        lines.append(f"# TYPE {name} gauge")
        for labels, samples in members:
            text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.extend(f"{name}{{{text}}} {v!r} {ts}" for ts, v in samples)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- Prometheus
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def query(api: str, expr: str, start: int, end: int, instant: bool) -> list[dict[str, Any]]:
    if instant:  # at Prometheus's now, where the rules have just been evaluated
        url = f"{api}/query?{urllib.parse.urlencode({'query': expr})}"
    else:
        params = {"query": expr, "start": str(start), "end": str(end), "step": "60"}
        url = f"{api}/query_range?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        result: list[dict[str, Any]] = json.load(response)["data"]["result"]
        return result


def substitute(expr: str) -> str:
    values = {"sensor": ".*", "__rate_interval": "2m", "__interval": "1m",
              "__range": f"{HOURS}h", "__range_s": str(HOURS * 3600)}  # fmt: skip
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def legend(fmt: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    return text or ", ".join(f"{k}={v}" for k, v in labels.items() if k != "__name__")


# ---------------------------------------------------------------- drawing
BG, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff",
          "#fade2a", "#96d98d", "#ffb357", "#ff7383", "#ca95e5"]  # fmt: skip


def human(v: float, unit: str) -> str:
    suffix = {"bytes": "B", "Bps": "B/s", "pps": " p/s", "reqps": " req/s", "ops": " ops/s",
              "s": " s"}.get(unit, "")  # fmt: skip
    base = 1024 if unit in ("bytes", "Bps") else 1000
    for prefix in ("", "k", "M", "G", "T"):
        if abs(v) < base:
            return f"{v:.3g}{prefix}{'i' if base == 1024 and prefix else ''}{suffix}"
        v /= base
    return f"{v:.3g}P{suffix}"


def threshold_color(panel: dict[str, Any], value: float) -> str:
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    color = "green"
    for step in steps:
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return {"green": "#73bf69", "orange": "#ff9830", "red": "#f2495c"}.get(color, color)


def value_mappings(panel: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Field name -> {value: text} from the panel's per-field value mappings (overrides)."""
    out: dict[str, dict[str, str]] = {}
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        for prop in override.get("properties", []):
            if prop["id"] == "mappings":
                field = override["matcher"]["options"]
                for mapping in prop["value"]:
                    for value, shown in mapping.get("options", {}).items():
                        out.setdefault(field, {})[value] = shown["text"]
    return out


def draw(dashboard: dict[str, Any], api: str, start: int, end: int, out: Path) -> None:
    panels = dashboard["panels"]
    total_h = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(24, total_h * 0.42), facecolor=BG)
    grid = list(range(start, end + 1, 60))

    def box(p: dict[str, Any]) -> list[float]:
        g = p["gridPos"]  # Grafana's grid: 24 columns, rows of equal height
        pad, title = 0.12, 0.75
        return [(g["x"] + pad) / 24, 1 - (g["y"] + g["h"] - pad) / total_h,
                (g["w"] - 2 * pad) / 24, (g["h"] - pad - title) / total_h]  # fmt: skip

    for p in panels:
        g = p["gridPos"]
        if p["type"] == "row":
            fig.text(0.003, 1 - (g["y"] + 0.6) / total_h, p["title"], color=TEXT, fontsize=15,
                     weight="bold", va="center")  # fmt: skip
            continue
        ax = fig.add_axes(box(p), facecolor=PANEL)
        fig.text((g["x"] + 0.15) / 24, 1 - (g["y"] + 0.45) / total_h, p["title"], color=TEXT,
                 fontsize=11, va="center")  # fmt: skip
        for spine in ax.spines.values():
            spine.set_color(GRID)
        ax.tick_params(colors=TEXT, labelsize=8)
        defaults = p.get("fieldConfig", {}).get("defaults", {})
        unit = defaults.get("unit", "short")
        results = []
        for t in p["targets"]:
            instant = t.get("instant", False) or p["type"] != "timeseries"
            for r in query(api, substitute(t["expr"]), start, end, instant):
                results.append((legend(t.get("legendFormat", ""), r["metric"]), r))
        if not results:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, "No data", color=TEXT, ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
        elif p["type"] == "timeseries":
            xs = [datetime.fromtimestamp(t, tz=UTC) for t in grid]
            bars = defaults.get("custom", {}).get("drawStyle") == "bars"
            bottom = [0.0] * len(grid)
            for i, (name, r) in enumerate(results[:12]):
                got = {int(float(v[0])): float(v[1]) for v in r["values"]}
                color = COLORS[i % len(COLORS)]
                if bars:
                    ys = [got.get(t, 0.0) for t in grid]
                    ax.bar(xs, ys, bottom=bottom, width=50 / 86400, color=color, label=name)
                    bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
                else:
                    ys = [got.get(t, float("nan")) for t in grid]
                    ax.plot(xs, ys, color=color, lw=1.3, label=name)
            ax.set_xlim(xs[0], xs[-1])
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
            ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _, u=unit: human(v, u)))
            ax.grid(color=GRID, lw=0.5)
            ax.legend(loc="upper left", fontsize=7, facecolor=PANEL, labelcolor=TEXT,
                      edgecolor=GRID, ncol=3, framealpha=0.8)  # fmt: skip
        elif p["type"] == "stat":
            ax.set_axis_off()
            value = sum(float(r["value"][1]) for _, r in results)
            ax.text(0.5, 0.45, human(value, unit), color=threshold_color(p, value), fontsize=26,
                    ha="center", va="center", transform=ax.transAxes)  # fmt: skip
        elif p["type"] == "piechart":
            items = sorted(((float(r["value"][1]), n) for n, r in results), reverse=True)
            total = sum(v for v, _ in items) or 1
            ax.pie([v for v, _ in items], colors=COLORS[: len(items)],
                   wedgeprops={"width": 0.4}, radius=1.1)  # fmt: skip
            ax.legend([f"{n}  {100 * v / total:.1f}%" for v, n in items], loc="center left",
                      bbox_to_anchor=(0.95, 0.5), fontsize=7, facecolor=PANEL, labelcolor=TEXT,
                      edgecolor=GRID)  # fmt: skip
        elif p["type"] == "bargauge":
            items = sorted(((float(r["value"][1]), n) for n, r in results), reverse=True)[:10]
            names, values = [n for _, n in items][::-1], [v for v, _ in items][::-1]
            ax.barh(range(len(items)), values, color="#5794f2", alpha=0.75)
            ax.set_yticks([])
            for k, name in enumerate(names):  # Grafana writes the name over the bar
                ax.text(0.005, k, f"{name}: {human(values[k], unit)}", color="white", fontsize=8,
                        va="center", transform=ax.get_yaxis_transform())  # fmt: skip
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _, u=unit: human(v, u)))
            ax.grid(axis="x", color=GRID, lw=0.5)
        else:  # table: the columns Grafana would show
            ax.set_axis_off()
            options = p.get("transformations", [{}])[0].get("options", {})
            excluded = set(options.get("excludeByName", {}))
            shown = value_mappings(p)
            lines = []
            for _, r in results[:8]:
                cells = [
                    shown.get(k, {}).get(v, f"{k}={v}")
                    for k, v in sorted(r["metric"].items())
                    if k not in excluded
                ]
                if "Value" not in excluded:
                    cells.append(f"{float(r['value'][1]):.0f}")
                lines.append("   ".join(cells))
            ax.text(0.01, 0.95, "\n".join(lines), color=TEXT, fontsize=8, va="top",
                    family="monospace", transform=ax.transAxes)  # fmt: skip
    fig.text(0.5, 1 + 0.3 / total_h, f"{dashboard['title']}: SYNTHETIC data (render-preview.py), "
             "drawn without Grafana from the dashboard's own queries", color=TEXT, fontsize=13,
             ha="center")  # fmt: skip
    fig.savefig(out, dpi=60, facecolor=BG, bbox_inches="tight")


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "dicom-sensor.png"
    dashboard = json.loads(DASHBOARD.read_text())
    end = int(time.time()) // 60 * 60
    start = end - HOURS * 3600
    with tempfile.TemporaryDirectory() as tmp:
        om = Path(tmp) / "data.om"
        om.write_text(synthesize(end))
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om),
                        f"{tmp}/tsdb"], check=True, capture_output=True)  # fmt: skip
        # deploy/'s rules, so that the "Firing alerts" panel shows what they make of the data.
        (Path(tmp) / "prometheus.yml").write_text(
            "global: {evaluation_interval: 1s}\n"
            f"rule_files: [{HERE.parent / 'prometheus' / 'rules' / 'dicom-sensor.rules.yml'}]\n"
        )
        port = free_port()
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/tsdb",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            api = f"http://127.0.0.1:{port}/api/v1"
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            for _ in range(50):  # until the rules have run once
                if query(api, "ALERTS", start, end, instant=True):
                    break
                time.sleep(0.2)
            draw(dashboard, api, start, end, out)
        finally:
            prom.terminate()
            prom.wait(timeout=10)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
