"""CPU cost of the workers' messages to the parent: own pipe (Outgoing, FromWorkers)
against the multiprocessing queue the workers shared before.

Usage (from the repository root, with the project's venv)::

    python bench/worker_transport.py --messages 100000 --rounds 3

One forked process sends ``--messages`` messages shaped like a record (~250 bytes pickled);
this process reads them. Printed per round: the sender's and the reader's CPU seconds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sensor.commands.workers import FromWorkers, Outgoing

MESSAGE = ("record", {"a": 1, "b": "x" * 200, "c": [1, 2, 3]})


def _by_queue(queue: Any, n: int) -> None:
    for _ in range(n):
        queue.put(MESSAGE)
    queue.put(("done",))


def _by_pipe(pipe: Any, n: int) -> None:
    theirs, mine = pipe
    theirs.close()
    out = Outgoing(mine)
    for _ in range(n):
        out.put(MESSAGE)
    out.put(("done",))
    out.close()


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run(kind: str, n: int) -> tuple[float, float]:
    """(sender CPU s, reader CPU s) for n messages."""
    ctx = multiprocessing.get_context("fork")
    child, me = _cpu(resource.RUSAGE_CHILDREN), _cpu(resource.RUSAGE_SELF)
    if kind == "queue":
        queue = ctx.Queue()
        proc = ctx.Process(target=_by_queue, args=(queue, n))
        proc.start()
        while queue.get(timeout=5)[0] != "done":
            pass
    else:
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_by_pipe, args=((reader, writer), n))
        proc.start()
        writer.close()
        pipes = FromWorkers([reader])
        ended = False
        while not ended:
            for _, message in pipes.receive(5):
                ended = message is None or message[0] == "done"
        pipes.close()
    proc.join()
    return _cpu(resource.RUSAGE_CHILDREN) - child, _cpu(resource.RUSAGE_SELF) - me


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    for _ in range(args.rounds):
        for kind in ("queue", "pipe"):
            sender, reader = run(kind, args.messages)
            print(f"{kind:5}  sender {sender:.2f} s  reader {reader:.2f} s  CPU")


if __name__ == "__main__":
    main()
