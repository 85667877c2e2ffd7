"""What the workers' parent spends judging one capture's policy inputs (issue 13).

Usage, from the repository root with the project's venv::

    python bench/parent_profile.py bench/data/imaging.pcap [--top 18]

One worker-mode Pipeline reads the capture and collects the policy inputs a worker would
send (PolicyOutbox); they are pickled as the queue would carry them; then one judging
Pipeline takes them through a PolicyInbox, as the parent does, under cProfile. Printed:
the number of inputs, the time to load them and to judge them (per input and per packet
of the capture), and the profile sorted by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pickle
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dissectors.registry import load_dissectors
from sensor.capture.offline import OfflineCapture
from sensor.pipeline import Pipeline, PolicyInbox, PolicyOutbox
from sensor.policy.config import default_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pcap")
    parser.add_argument("--top", type=int, default=18)
    args = parser.parse_args()
    config = default_config()
    worker = Pipeline(load_dissectors(), policy_config=config)
    outbox = PolicyOutbox()
    worker.remote_policy(outbox)
    worker.read(OfflineCapture(args.pcap))
    worker.finish()
    packets = worker.counters.packets
    inputs = outbox.take(outbox.clock)[1]
    blob = pickle.dumps(inputs)
    start = time.perf_counter()
    loaded = pickle.loads(blob)
    load_s = time.perf_counter() - start
    judge = Pipeline(load_dissectors(), policy_config=config)
    inbox = PolicyInbox(judge, 1)
    start = time.perf_counter()
    inbox.receive(0, float("inf"), loaded)
    judge.finish()
    judge_s = time.perf_counter() - start
    n = len(inputs)
    share = n / max(packets, 1)
    print(f"{packets:,} packets, {n:,} policy inputs ({share:.1%}), {len(blob):,} bytes pickled")
    for what, seconds in (("load", load_s), ("judge", judge_s)):
        per_input, per_packet = seconds / n * 1e6, seconds / max(packets, 1) * 1e6
        print(
            f"{what}: {seconds:.3f} s, {per_input:.1f} us per input, {per_packet:.2f} us per packet"
        )
    judge = Pipeline(load_dissectors(), policy_config=config)
    inbox = PolicyInbox(judge, 1)
    profile = cProfile.Profile()
    profile.enable()
    inbox.receive(0, float("inf"), pickle.loads(blob))
    judge.finish()
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
