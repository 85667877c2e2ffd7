"""The struct fast path for Ethernet frames must agree with the dpkt decoder, or decline."""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import dpkt
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.capture.decode import _decode_ethernet, _fast_ethernet, decoder_for

ROOT = Path(__file__).resolve().parents[3]


@lru_cache(maxsize=1)
def ethernet_frames() -> list[bytes]:
    """Every Ethernet frame of the bundled captures."""
    frames: list[bytes] = []
    for path in sorted(ROOT.glob("pcaps/**/capture.pcap*")):
        with open(path, "rb") as fh:
            reader = dpkt.pcapng.Reader(fh) if path.suffix == ".pcapng" else dpkt.pcap.Reader(fh)
            if reader.datalink() != 1:
                continue
            with contextlib.suppress(dpkt.NeedData):  # the capture cut mid-packet
                frames.extend(buf for _, buf in reader)
    return frames


def test_fast_path_agrees_on_every_real_frame() -> None:
    frames = ethernet_frames()
    taken = 0
    for i, frame in enumerate(frames):
        fast = _fast_ethernet(float(i), frame)
        if fast is not None:
            taken += 1
            assert fast == _decode_ethernet(float(i), frame), i
    # The fast path is the common case, not a corner: most real frames take it.
    assert taken > 0.8 * len(frames)
    assert decoder_for(1)(0.0, frames[0]) == _decode_ethernet(0.0, frames[0])


@given(st.data())
@settings(max_examples=400, deadline=None)
def test_fast_path_agrees_on_damaged_frames(data: st.DataObject) -> None:
    frames = ethernet_frames()
    frame = bytearray(data.draw(st.sampled_from(frames)))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, min(len(frame) - 1, 80)))
        frame[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    damaged = bytes(frame[:cut])
    fast = _fast_ethernet(1.0, damaged)
    if fast is not None:
        assert fast == _decode_ethernet(1.0, damaged)
