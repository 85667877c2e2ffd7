"""Live capture end to end: a small hospital in network namespaces, real DICOM peers, a span port.

Every run builds its own namespaces (a random prefix such as ``dsl3fa2c1-``) and deletes them
at the end, whatever happened:

    ext       198.51.100.10  internet host, in no zone (default zone "internet", external)
    pacs      10.30.0.5      DCMTK storescp, AE PACS, port 104       zone pacs (radiology, dmz)
    modality  10.20.0.11     DCMTK storescu CT01, a pynetdicom SCU   zone radiology (internal)
    office    10.50.0.31     DCMTK storescp, AE SHADOW, port 11112   zone office (not radiology)
    office2   10.50.0.32     DCMTK storescu/echoscu CLERK            zone office; after the
                                                                     reload its own zone research
    core      one Linux bridge; the ingress of every host port is mirrored (tc mirred) to span0
    sensor    span1, the far end of span0: ``capture -i span1`` runs here, /metrics on its lo

Each host has its own /24 and on-link routes to the other subnets, so one bridge joins them
without a router, and every frame is mirrored once, as it enters the bridge from its sender
(the way a SPAN session on the access ports of a switch sees it).

The first four tests run in file order against one sensor (module fixture ``live``): steady
state (records, alerts, a scrape of /metrics), SIGHUP with logrotate and a new zone, SIGHUP with
a broken config, SIGTERM in the middle of an association (exit 0, ``capture-ended``, the metrics
file at exit). Then sensors of their own: kernel drops (SIGSTOP, a 1 MiB ring, tcpreplay onto a
veth in the sensor namespace), the drop to ``nobody``, and the one-line errors. About 10 s.

Needs root (namespaces, tc, raw sockets), iproute2 and DCMTK (by full path: pynetdicom puts apps
of the same names on PATH). Skipped only when not root.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[3]
DCMTK = Path("/usr/bin")
METRICS_PORT = 9464
NOBODY = 65534

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: network namespaces, tc mirred and a raw capture socket",
)

# host -> (address, zone under the first config)
HOSTS = {
    "ext": "198.51.100.10",
    "pacs": "10.30.0.5",
    "modality": "10.20.0.11",
    "office": "10.50.0.31",
    "office2": "10.50.0.32",
}
EXT, PACS, MODALITY, OFFICE, OFFICE2 = (HOSTS[h] for h in HOSTS)
ON_LINK = ("10.0.0.0/8", "198.51.100.0/24")

CONFIG = """\
# Zones of the live end-to-end test's address plan (tests/sensor/commands/test_live_e2e.py).
zones:
  radiology:
    cidrs: [10.20.0.0/24]
    radiology: true
    trust: internal
  pacs:
    cidrs: [10.30.0.0/24]
    radiology: true
    trust: dmz
  office:
    cidrs: [10.50.0.0/24]
    radiology: false
    trust: internal
default_zone:
  name: internet
  trust: external
alerts:
  fold_window: 300
"""
# The reload adds a zone: office2 (a /32 inside the office /24, longest prefix wins).
CONFIG_RESEARCH = CONFIG.replace(
    "default_zone:",
    "  research:\n    cidrs: [10.50.0.32/32]\n    radiology: false\n    trust: internal\n"
    "default_zone:",
)
CONFIG_BROKEN = "zones:\n  research:\n    cidrs: [not-an-address]\n"

LONG_SCU = """\
import sys, time
from pynetdicom import AE
from pynetdicom.sop_class import Verification
ae = AE(ae_title="LONGSCU")
ae.add_requested_context(Verification)
assoc = ae.associate(sys.argv[1], 104, ae_title="PACS")
if not assoc.is_established:
    sys.exit("association not established")
status = assoc.send_c_echo()
# The first 70 bytes of a 4,102-byte P-DATA-TF (one PDV item of 4,092 bytes: context 1, a
# data set fragment): the sensor is stopped inside this PDU; the connection stays open.
head = b"\\x04\\x00\\x00\\x00\\x10\\x00" + b"\\x00\\x00\\x0f\\xfc\\x01\\x00"
assoc.dul.socket.socket.sendall(head + bytes(58))
print("echoed", status.Status, flush=True)
time.sleep(120)
assoc.release()
"""

SCRAPE = (
    "import sys, urllib.request\n"
    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
)


# ---------------------------------------------------------------------------- helpers


def run(*cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A command to completion; its output in the error when it fails."""
    proc = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def ip(args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip`` with space-separated arguments (none of them has a space)."""
    return run("ip", *args.split(), check=check)


def wait_for(
    what: str,
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    diag: Callable[[], str] = lambda: "",
) -> Any:
    """Poll until ``predicate()`` is truthy; fail with ``diag()`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diag()}")
        time.sleep(0.1)


def json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def label_values(text: str, name: str, label: str) -> set[str]:
    return {
        s.labels[label]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and label in s.labels
    }


def pairs(text: str, **labels: str) -> dict[tuple[str, str], float]:
    """dicom_associations_total by (source zone, destination zone), zero pairs left out."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name != "dicom_associations_total" or not s.value:
                continue
            if all(s.labels.get(k) == v for k, v in labels.items()):
                key = (s.labels["source_zone"], s.labels["destination_zone"])
                out[key] = out.get(key, 0.0) + s.value
    return out


def write_dicom(path: Path) -> None:
    """One small SYNTHETIC CT image (no real patient data)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ct = "1.2.840.10008.5.1.4.1.1.2"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ct
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ct
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "SYNTHETIC^LIVE"
    ds.PatientID = "SYNLIVE1"
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(256)) * 32
    ds.save_as(path, enforce_file_format=True)


# ---------------------------------------------------------------------------- the lab


class Lab:
    """The namespaces, the bridge, the span port and the DICOM peers of one test run."""

    def __init__(self, work: Path) -> None:
        self.prefix = "dsl" + secrets.token_hex(3)
        self.work = work
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dicom = work / "ct.dcm"

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def cmd(self, host: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def _add_ns(self, host: str) -> str:
        name = self.ns(host)
        ip(f"netns add {name}")
        self.namespaces.append(name)
        ip(f"-n {name} link set lo up")
        return name

    def build(self) -> None:
        core = self._add_ns("core")
        sensor = self._add_ns("sensor")
        ip(f"-n {core} link add sw type bridge")
        ip(f"-n {core} link set sw up")
        ip(f"-n {core} link add span0 type veth peer name span1 netns {sensor}")
        ip(f"-n {core} link set span0 up")
        ip(f"-n {sensor} link set span1 up")
        for index, (host, address) in enumerate(HOSTS.items()):
            ns = self._add_ns(host)
            port = f"{self.prefix}p{index}"
            ip(f"link add {port} netns {core} type veth peer name eth0 netns {ns}")
            ip(f"-n {ns} addr add {address}/24 dev eth0")
            ip(f"-n {ns} link set eth0 up")
            for net in ON_LINK:
                ip(f"-n {ns} route replace {net} dev eth0")
            ip(f"-n {core} link set {port} master sw up")
            # wire-like frames: no TSO/GSO super-frames, real checksums
            for where, dev in ((ns, "eth0"), (core, port)):
                ip(f"netns exec {where} ethtool -K {dev} tso off gso off gro off tx off rx off",
                   check=False)  # fmt: skip
            # the span: every frame a host sends, once, as it enters the switch
            ip(f"netns exec {core} tc qdisc add dev {port} clsact")
            ip(f"netns exec {core} tc filter add dev {port} ingress u32 match u32 0 0 "
               "action mirred egress mirror dev span0")  # fmt: skip
        write_dicom(self.dicom)

    def start(self, host: str, name: str, *argv: str) -> subprocess.Popen[bytes]:
        """A long-running peer in a host's namespace, its output in ``work/name.log``."""
        log = (self.work / f"{name}.log").open("wb")
        proc = subprocess.Popen(self.cmd(host, *argv), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def peer(self, host: str, *argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        """A client in a host's namespace, run to completion."""
        return run(*self.cmd(host, *argv), check=ok)

    def wait_listen(self, host: str, port: int) -> None:
        def listening() -> bool:
            out = run(*self.cmd(host, "ss", "-Hltn", f"sport = :{port}"), check=False).stdout
            return "LISTEN" in out

        wait_for(f"a listener on {host}:{port}", listening, 10, lambda: self.logs())

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.work.glob("*.log"))
        )

    def echo(self, host: str, aet: str, address: str = PACS) -> None:
        self.peer(host, str(DCMTK / "echoscu"), "-aet", aet, "-aec", "PACS", address, "104")

    def store(self, host: str, aet: str, aec: str, address: str, port: int) -> None:
        argv = f"-aet {aet} -aec {aec} {address} {port}".split()
        self.peer(host, str(DCMTK / "storescu"), *argv, str(self.dicom))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The hospital with its peers listening: storescp PACS:104 and SHADOW:11112 (office).

    The SCPs run with -dhl: a reverse DNS lookup of the peer would wait for a resolver that
    no namespace here can reach.
    """
    for tool in ("ip", "tc", "ss"):
        assert shutil.which(tool), f"{tool} not found (iproute2)"
    for tool in ("echoscu", "storescu", "storescp"):
        assert (DCMTK / tool).exists(), f"DCMTK's {DCMTK / tool} not found"
    work = tmp_path_factory.mktemp("live-lab")
    lab = Lab(work)
    try:
        lab.build()
        storescp = str(DCMTK / "storescp")
        pacs_in, office_in = work / "pacs-in", work / "office-in"
        pacs_in.mkdir()
        office_in.mkdir()
        lab.start("pacs", "storescp-pacs", storescp, "-dhl", "-aet", "PACS", "-od", str(pacs_in),
                  "104")  # fmt: skip
        lab.start("office", "storescp-office", storescp, "-dhl", "-aet", "SHADOW", "-od",
                  str(office_in), "11112")  # fmt: skip
        lab.wait_listen("pacs", 104)
        lab.wait_listen("office", 11112)
        yield lab
    finally:
        lab.close()
        leftover = run("ip", "netns", "list", check=False).stdout
        assert lab.prefix not in leftover, f"namespaces left behind:\n{leftover}"


# ---------------------------------------------------------------------------- the sensor


class Sensor:
    """``capture -i span1`` (or another interface) in the sensor namespace, every output on."""

    def __init__(
        self,
        lab: Lab,
        out: Path,
        config: Path,
        *extra: str,
        port: int = METRICS_PORT,
        wrap: list[str] | None = None,
        iface: str = "span1",
    ) -> None:
        self.lab = lab
        self.out = out
        self.config = config
        self.port = port
        names = {"associations": "jsonl", "events": "jsonl", "inventory": "json",
                 "metrics": "prom"}  # fmt: skip
        self.paths = {name: out / f"{name}.{ext}" for name, ext in names.items()}
        self.stderr = out / "sensor.stderr"
        argv = [sys.executable, "-m", "sensor.cli", "capture", "-i", iface, "--config",
                str(config), "--metrics-listen", f"127.0.0.1:{port}"]  # fmt: skip
        for name, path in self.paths.items():
            argv += [f"--{name}", str(path)]
        argv += extra
        with self.stderr.open("wb") as err:
            # `ip netns exec` execs: the Popen's pid is the sensor's, signals reach it directly
            # (so does unshare, and the shim's sh)
            self.proc = subprocess.Popen(
                lab.cmd("sensor", *(wrap or []), *argv),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        lab.procs.append(self.proc)
        self.started = self.wait_log("capture.started")

    def diag(self) -> str:
        return (
            f"--- sensor stderr\n{self.stderr.read_text(errors='replace')[-4000:]}\n"
            f"--- records\n{self.records()}\n--- alerts\n{self.alerts()}\n{self.lab.logs()}"
        )

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stderr.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "(not JSON)", "line": line})
        return out

    def wait_log(self, event: str, after: int = 0, timeout: float = 15) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.poll() is not None and event != "capture.stopped":
                pytest.fail(f"sensor exited {self.proc.returncode}\n{self.diag()}")
            return next((r for r in self.logs()[after:] if r.get("event") == event), None)

        result: dict[str, Any] = wait_for(f"log {event}", found, timeout, self.diag)
        return result

    def records(self) -> list[dict[str, Any]]:
        """Association records, rotated file (``.1``) first."""
        path = self.paths["associations"]
        return json_lines(path.with_name(path.name + ".1")) + json_lines(path)

    def alerts(self) -> list[dict[str, Any]]:
        return [e for e in json_lines(self.paths["events"]) if e["event"]["kind"] == "alert"]

    def wait_records(self, n: int, timeout: float = 15) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = wait_for(
            f"{n} association records",
            lambda: len(self.records()) >= n and self.records(),
            timeout,
            self.diag,
        )
        return result

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.port}/metrics"
        return run(*self.lab.cmd("sensor", sys.executable, "-c", SCRAPE, url)).stdout

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"sensor still running {timeout:.0f} s after SIGTERM\n{self.diag()}")


def alert_keys(alerts: list[dict[str, Any]]) -> set[tuple[str, str, str, str, str, str]]:
    return {
        (
            a["rule"]["id"],
            a["source"]["ip"],
            a["source"]["zone"],
            a["destination"]["ip"],
            a["destination"]["zone"],
            a["event"]["action"],
        )
        for a in alerts
    }


def by_calling(records: list[dict[str, Any]], aet: str) -> list[dict[str, Any]]:
    return [r for r in records if r["dicom"].get("calling_ae_title") == aet]


@pytest.fixture(scope="module")
def live(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sensor]:
    """One sensor for the ordered tests below; killed at the end if a test left it running."""
    out = tmp_path_factory.mktemp("live-sensor")
    config = out / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    sensor = Sensor(lab, out, config)
    yield sensor
    if sensor.proc.poll() is None:
        sensor.proc.kill()
        sensor.proc.wait(5)


# ---------------------------------------------------------------------------- 1. steady state


def test_records_alerts_and_metrics_of_real_peers(lab: Lab, live: Sensor) -> None:
    assert live.started["interfaces"] == ["span1"]
    assert live.started["uid"] == 0
    lab.store("modality", "CT01", "PACS", PACS, 104)  # radiology -> pacs: normal, no alert
    lab.echo("ext", "EXTSCU")  # internet -> pacs: perimeter-inbound
    lab.store("office2", "CLERK", "SHADOW", OFFICE, 11112)  # office -> office: shadow PACS
    records = live.wait_records(3)
    assert len(records) == 3, live.diag()

    def one(aet: str) -> dict[str, Any]:
        found = by_calling(records, aet)
        assert len(found) == 1, live.diag()
        return found[0]

    expected = {
        "CT01": (MODALITY, PACS, 104, "PACS", {"C-STORE-RQ": 1, "C-STORE-RSP": 1}),
        "EXTSCU": (EXT, PACS, 104, "PACS", {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1}),
        "CLERK": (OFFICE2, OFFICE, 11112, "SHADOW", {"C-STORE-RQ": 1, "C-STORE-RSP": 1}),
    }
    for aet, (src, dst, port, called, dimse) in expected.items():
        r = one(aet)
        assert (r["source"]["ip"], r["destination"]["ip"], r["destination"]["port"]) == (
            src,
            dst,
            port,
        ), r
        assert r["dicom"]["called_ae_title"] == called
        assert r["dicom"]["association"]["result"] == "accepted"
        assert r["dicom"]["association"]["end"] == "released"
        assert r["dicom"]["dimse"] == dimse
        assert r["dicom"]["implementation"]["requestor"]["vendor"] == "DCMTK"
    assert one("CT01")["dicom"]["pdata"]["data_sets"] == 1

    alerts = live.alerts()
    assert alert_keys(alerts) == {
        ("perimeter-inbound", EXT, "internet", PACS, "pacs", "detected"),
        ("non-radiology-association", OFFICE2, "office", OFFICE, "office", "detected"),
    }, live.diag()
    assert len(alerts) == 2
    for a in alerts:
        calling = {EXT: "EXTSCU", OFFICE2: "CLERK"}[a["source"]["ip"]]
        assert a["dicom"]["calling_ae_title"] == calling
        assert a["destination"]["port"] == {PACS: 104, OFFICE: 11112}[a["destination"]["ip"]]

    text = live.scrape()  # the live endpoint, from inside the sensor's namespace
    assert pairs(text, result="accepted", end="released") == {
        ("radiology", "pacs"): 1,
        ("internet", "pacs"): 1,
        ("office", "office"): 1,
    }
    assert metric(text, "dicom_alerts_total", rule="perimeter-inbound") == 1
    assert metric(text, "dicom_alerts_total", rule="non-radiology-association") == 1
    assert metric(text, "dicom_alerts_total") == 2
    assert metric(text, "dicom_sensor_capture_dropped_packets_total") == 0
    assert metric(text, "dicom_associations_active") == 0


# ---------------------------------------------------------------------------- 2. SIGHUP


def test_sighup_reopens_outputs_and_loads_a_new_zone(lab: Lab, live: Sensor) -> None:
    assert live.proc.poll() is None, live.diag()
    before = len(live.records())
    path = live.paths["associations"]
    os.replace(path, path.with_name(path.name + ".1"))  # logrotate moves it away ...
    live.config.write_text(CONFIG_RESEARCH, encoding="utf-8")
    mark = len(live.logs())
    live.hup()  # ... and signals
    reloaded = live.wait_log("config.reloaded", after=mark)
    assert reloaded["config"] == str(live.config)
    lab.echo("office2", "CLERK")  # research (new zone) -> pacs: radiology-boundary
    live.wait_records(before + 1)
    assert len(json_lines(path)) == 1, "the association file was not reopened by name"
    alert = wait_for(
        "a radiology-boundary alert",
        lambda: [a for a in live.alerts() if a["rule"]["id"] == "radiology-boundary"],
        10,
        live.diag,
    )
    assert alert_keys(alert) == {
        ("radiology-boundary", OFFICE2, "research", PACS, "pacs", "detected")
    }
    text = live.scrape()
    assert "research" in label_values(text, "dicom_associations_total", "source_zone")
    assert pairs(text)[("research", "pacs")] == 1


def test_sighup_with_a_broken_config_keeps_the_old_one(lab: Lab, live: Sensor) -> None:
    assert live.proc.poll() is None, live.diag()
    before = len(live.records())
    live.config.write_text(CONFIG_BROKEN, encoding="utf-8")
    mark = len(live.logs())
    live.hup()
    rejected = live.wait_log("config.rejected", after=mark)
    assert rejected["level"] == "error"
    assert str(live.config) in rejected["reason"]
    assert rejected["kept"] == str(live.config)
    assert live.proc.poll() is None, live.diag()
    lab.echo("office2", "CLERK")  # still research -> pacs under the kept config
    live.wait_records(before + 1)
    text = live.scrape()
    assert pairs(text)[("research", "pacs")] == 2
    assert metric(text, "dicom_alerts_total", rule="radiology-boundary") == 2
    assert not [r for r in live.logs()[mark:] if r.get("event") == "config.reloaded"]


# ---------------------------------------------------------------------------- 3. SIGTERM


def test_sigterm_flushes_an_open_association(lab: Lab, live: Sensor) -> None:
    assert live.proc.poll() is None, live.diag()
    scu = lab.start("modality", "long-scu", sys.executable, "-c", LONG_SCU, PACS)
    log = lab.work / "long-scu.log"
    wait_for("the long SCU's C-ECHO", lambda: "echoed" in log.read_text(), 15, lab.logs)
    wait_for(
        "the sensor to follow the open association",
        lambda: metric(live.scrape(), "dicom_associations_active") == 1,
        10,
        live.diag,
    )
    started = time.monotonic()
    rc = live.stop()
    took = time.monotonic() - started
    assert scu.poll() is None, "the SCU ended before the sensor: the association was not open"
    scu.kill()
    assert rc == 0, live.diag()
    assert took < 5, f"SIGTERM took {took:.1f} s"

    long = by_calling(live.records(), "LONGSCU")
    assert len(long) == 1, live.diag()
    record = long[0]
    assert record["dicom"]["association"]["end"] == "capture-ended"
    assert record["dicom"]["association"]["result"] == "accepted"
    assert record["dicom"]["dimse"] == {"C-ECHO-RQ": 1, "C-ECHO-RSP": 1}
    assert (record["source"]["ip"], record["destination"]["ip"]) == (MODALITY, PACS)
    # stopped inside a PDU by SIGTERM, not by the peers: nothing was truncated
    assert not record["dicom"].get("anomalies"), record["dicom"].get("anomalies")

    logs = live.logs()
    assert all(r["event"] != "(not JSON)" for r in logs), logs
    stopped = [r for r in logs if r["event"] == "capture.stopped"]
    assert len(stopped) == 1, logs
    assert stopped[0]["associations"] == 6
    assert stopped[0]["dropped_kernel"] == 0
    assert stopped[0]["packets"] > 0

    # the folded repeat of radiology-boundary (2 findings: 1 detected, 1 folded) leaves at exit
    folded = [a for a in live.alerts() if a["event"]["action"] == "folded"]
    assert [(a["rule"]["id"], a["dicom"]["alert"]["count"]) for a in folded] == [
        ("radiology-boundary", 1)
    ]

    text = live.paths["metrics"].read_text(encoding="utf-8")
    assert pairs(text, result="accepted", end="released") == {
        ("radiology", "pacs"): 1,
        ("internet", "pacs"): 1,
        ("office", "office"): 1,
        ("research", "pacs"): 2,
    }
    assert pairs(text, end="capture-ended") == {("radiology", "pacs"): 1}
    assert metric(text, "dicom_alerts_total") == 4
    assert metric(text, "dicom_anomalies_total", reason="truncated") == 0
    assert metric(text, "dicom_sensor_capture_dropped_packets_total") == 0
    assert metric(text, "dicom_sensor_packets_total") > 0
    nodes = json.loads(live.paths["inventory"].read_text(encoding="utf-8"))
    assert PACS in json.dumps(nodes)


# ---------------------------------------------------------------------------- kernel drops


def test_kernel_drops_reach_the_log_the_endpoint_and_the_metrics_file(lab: Lab) -> None:
    """A sensor that cannot keep up must say so everywhere its health is read.

    The sensor is stopped (SIGSTOP) with a 1 MiB ring while tcpreplay sends about 19 MB at top
    speed onto a veth of its own, so the kernel drops; then it continues and is stopped. The
    store goes to port 11112, which the kernel filter admits before any head is seen.
    """
    assert shutil.which("tcpreplay"), "tcpreplay not found"
    pcap = ROOT / "pcaps" / "dcmtk-store-11112" / "capture.pcap"
    out = lab.work / "drops"
    out.mkdir()
    config = out / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    ns = lab.ns("sensor")
    ip(f"-n {ns} link add dropa type veth peer name dropb")
    for dev in ("dropa", "dropb"):
        ip(f"-n {ns} link set {dev} mtu 9000 up")
    sensor = Sensor(lab, out, config, "--buffer-mb", "1", port=METRICS_PORT + 3, iface="dropa")
    os.kill(sensor.proc.pid, signal.SIGSTOP)
    try:
        run(
            *lab.cmd("sensor", "tcpreplay", "--intf1=dropb", "--topspeed", "--loop=100", str(pcap)),
            timeout=60,
        )
    finally:
        os.kill(sensor.proc.pid, signal.SIGCONT)

    def scraped_drops() -> float:
        return metric(sensor.scrape(), "dicom_sensor_capture_dropped_packets_total")

    live_drops = wait_for("kernel drops on /metrics", scraped_drops, 10, sensor.diag)
    assert sensor.stop() == 0, sensor.diag()
    stopped = sensor.logs()[-1]
    assert stopped["event"] == "capture.stopped", sensor.diag()
    assert stopped["dropped_kernel"] >= live_drops > 0
    text = sensor.paths["metrics"].read_text(encoding="utf-8")
    in_file = metric(text, "dicom_sensor_capture_dropped_packets_total")
    assert in_file == stopped["dropped_kernel"], "the --metrics file at exit lost the kernel drops"


# ---------------------------------------------------------------------------- 4. privilege


def nobody_can_run_python() -> bool:
    """After switching to ``nobody`` the way the sensor does, can Python still import?"""
    probe = (
        f"import os; os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY}); "
        "import gzip, http.server, prometheus_client"
    )
    return run(sys.executable, "-c", probe, check=False).returncode == 0


def blocked_dirs() -> dict[Path, set[str]]:
    """Directories on the interpreter's and the checkout's paths that others cannot enter,
    with the child names the sensor needs in each."""
    blocked: dict[Path, set[str]] = {}
    for target in {Path(sys.executable).resolve(), Path(sys.prefix), ROOT}:
        for parent in target.parents:
            if not parent.stat().st_mode & 0o001:
                child = target.relative_to(parent).parts[0]
                blocked.setdefault(parent, set()).add(child)
    return blocked


def readable_interpreter(stage: Path) -> list[str]:
    """A command prefix that shows ``nobody`` the interpreter as an installed one would be.

    Here the venv's base interpreter may live in a home directory of mode 0700 (pyenv under
    /root). In a private mount namespace of the sensor alone, a tmpfs (0755) covers each such
    directory and only the entries the sensor needs are bound back into it: nothing else of
    the host changes. Empty when nobody can run the interpreter as it is.
    """
    blocked = blocked_dirs()
    if not blocked:
        return []
    lines = ["set -e"]
    for i, (directory, children) in enumerate(sorted(blocked.items())):
        for j, child in enumerate(sorted(children)):
            keep = stage / f"{i}-{j}"
            keep.mkdir(parents=True)
            lines.append(f"mount --bind '{directory / child}' '{keep}'")
        lines.append(f"mount -t tmpfs -o mode=0755 dsl-shim '{directory}'")
        for j, child in enumerate(sorted(children)):
            lines.append(f"mkdir '{directory / child}'")
            lines.append(f"mount --move '{stage / f'{i}-{j}'}' '{directory / child}'")
    lines.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines), "sh"]


def test_drops_to_nobody_and_still_writes_its_outputs(lab: Lab) -> None:
    # Not under tmp_path: pytest makes /tmp/pytest-of-root mode 0700, nobody cannot reach it.
    out = Path(tempfile.mkdtemp(prefix="dsl-nobody-"))
    try:
        os.chown(out, NOBODY, NOBODY)
        out.chmod(0o755)
        config = out / "config.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        shim = [] if nobody_can_run_python() else readable_interpreter(out / "stage")
        sensor = Sensor(
            lab, out, config, "--user", "nobody", "--no-root", port=METRICS_PORT + 1, wrap=shim
        )
        assert sensor.started["uid"] == NOBODY
        status = (Path("/proc") / str(sensor.proc.pid) / "status").read_text()
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        assert uids == [str(NOBODY)] * 4, status  # real, effective, saved, filesystem
        lab.echo("ext", "EXTSCU")
        records = sensor.wait_records(1)
        wait_for("the perimeter alert", sensor.alerts, 10, sensor.diag)
        assert metric(sensor.scrape(), "dicom_alerts_total", rule="perimeter-inbound") == 1
        assert sensor.stop() == 0, sensor.diag()
        assert [r["dicom"]["calling_ae_title"] for r in records] == ["EXTSCU"]
        for name, path in sensor.paths.items():
            assert path.exists(), f"{name} not written"
            assert path.stat().st_uid == NOBODY, f"{name} not written by nobody"
        text = sensor.paths["metrics"].read_text(encoding="utf-8")
        assert pairs(text) == {("internet", "pacs"): 1}
        assert sensor.logs()[-1]["event"] == "capture.stopped"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_user_who_cannot_read_the_interpreter_still_captures(lab: Lab) -> None:
    """Everything the sensor needs must be imported before it drops privileges.

    Only meaningful where the interpreter is not readable by ``nobody`` (pyenv under a 0700
    /root here): the capture is open, the user switched, and then a late import of the
    metrics server (prometheus_client -> gzip) must not kill the sensor with a traceback.
    """
    if nobody_can_run_python():
        pytest.skip("nobody can read this interpreter: nothing to check here")
    out = Path(tempfile.mkdtemp(prefix="dsl-nobody-"))
    try:
        os.chown(out, NOBODY, NOBODY)
        out.chmod(0o755)
        config = out / "config.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        sensor = Sensor(lab, out, config, "--user", "nobody", port=METRICS_PORT + 2)
        assert sensor.started["uid"] == NOBODY
        lab.echo("ext", "EXTSCU")
        sensor.wait_records(1)
        assert sensor.stop() == 0, sensor.diag()
        assert sensor.paths["metrics"].exists(), sensor.diag()
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ---------------------------------------------------------------------------- 5. errors


def capture(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "sensor.cli", "capture", *args, check=False, timeout=60)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dicom-sensor: "), lines[0]
    return lines[0]


def test_missing_interface_is_one_line_exit_2() -> None:
    name = "dslno" + secrets.token_hex(4)
    line = one_line(capture("-i", name))
    assert name in line
    assert "no such device" in line


def test_bad_bpf_is_one_line_exit_2() -> None:
    line = one_line(capture("-i", "lo", "--bpf", "tcp and and port"))
    assert "BPF filter does not compile" in line


def test_no_root_without_user_is_one_line_exit_2(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    line = one_line(capture("-i", "lo", "--no-root", "--events", str(events)))
    assert "--no-root" in line
    assert not events.exists(), "it wrote an output as root"


def test_unknown_user_is_one_line_exit_2() -> None:
    line = one_line(capture("-i", "lo", "--user", "dsl-no-such-user"))
    assert "no such user" in line
