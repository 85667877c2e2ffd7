"""The bounded memo behind the UID and transfer-syntax-run caches."""

from __future__ import annotations

from dissectors.dicom.memo import Memo
from dissectors.dicom.text import uid, uid_memo


def test_memo_is_bounded_and_emptied_when_full() -> None:
    memo: Memo[int] = Memo(max_entries=3, max_key_bytes=8)
    for n in range(3):
        memo.put(bytes([n]), n)
    assert len(memo) == 3 and memo.flushes == 0
    memo.put(b"\x09", 9)  # full: emptied, then kept
    assert len(memo) == 1 and memo.flushes == 1
    assert memo.get(b"\x00") is None and memo.get(b"\x09") == 9


def test_memo_skips_long_keys() -> None:
    memo: Memo[int] = Memo(max_entries=3, max_key_bytes=4)
    memo.put(b"12345", 1)
    assert len(memo) == 0 and memo.get(b"12345") is None


def test_memo_clear() -> None:
    memo: Memo[int] = Memo(max_entries=3, max_key_bytes=4)
    memo.put(b"1", 1)
    memo.clear()
    assert len(memo) == 0 and memo.flushes == 0


def test_uid_memo_returns_what_uid_returns() -> None:
    for raw in (b"1.2.840.10008.1.2\x00", b" 1.2 ", b"1.2.X", b"", b"\x00", b"1." + b"2" * 80):
        assert uid_memo(raw) == uid(raw)
        assert uid_memo(raw) == uid(raw)  # the second time from the memo
