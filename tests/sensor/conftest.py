"""Fixtures shared by the sensor's tests."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator

import pytest

_PAIRS = itertools.count()


@contextlib.contextmanager
def _veth_pair() -> Iterator[tuple[str, str]]:
    tag = f"{os.getpid() % 10000:04d}{next(_PAIRS) % 10}"
    a, b = f"dsv{tag}a", f"dsv{tag}b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        for name in (a, b):
            subprocess.run(["ip", "link", "set", name, "mtu", "9000", "up"], check=True)
        yield a, b
    finally:
        subprocess.run(["ip", "link", "del", a], check=False)


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    """A veth pair of our own in the root namespace (MTU 9000), removed afterwards."""
    with _veth_pair() as pair:
        yield pair


@pytest.fixture
def other_veth() -> Iterator[tuple[str, str]]:
    """A second veth pair, for a sensor on two interfaces."""
    with _veth_pair() as pair:
        yield pair
