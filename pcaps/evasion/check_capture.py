"""Check that a capture holds the evasion its scenario claims, on the wire (run by generate.sh).

  reserved-bits  the message control header of each command PDV the attacker sent, per
                 connection: the values it was told to send (0x07, 0x43, 0x83, 0xFF)
  split-header   per connection (in SYN order, K = 0..5): every PDU the attacker sent starts
                 a TCP segment, and (K > 0) a segment ends after exactly its first K bytes
  overlap-*      two attacker segments with the same sequence range and different bytes; the
                 first names the real move destination (EXFIL), the second the decoy
                 (EVIL-SCU); -held: both before a segment that starts earlier and fills the
                 hole without covering them (they were out of order, and what the victim
                 read past the hole came from one of them); -retransmit: no such segment

Reads the pcap with dpkt; prints what it found; exits non-zero when the claim does not hold.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections import defaultdict

import dpkt


def segments(path: str, client_net: str) -> dict[tuple[int, int, str], list[tuple[int, bytes]]]:
    """Attacker -> victim TCP payload segments per (client port, server port, server ip)."""
    out: dict[tuple[int, int, str], list[tuple[int, bytes]]] = defaultdict(list)
    syn_order: list[tuple[int, int, str]] = []
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            src = socket.inet_ntoa(ip.src)
            if not src.startswith(client_net):
                continue
            tcp = ip.data
            key = (tcp.sport, tcp.dport, socket.inet_ntoa(ip.dst))
            if tcp.flags & dpkt.tcp.TH_SYN and key not in syn_order:
                syn_order.append(key)
            if tcp.data:
                out[key].append((tcp.seq, bytes(tcp.data)))
    return {k: out[k] for k in syn_order if k in out}


def stream(segs: list[tuple[int, bytes]]) -> tuple[bytes, set[int], set[int]]:
    """The byte stream (the first copy of each byte kept), segment start and end offsets."""
    base = min(seq for seq, _ in segs)
    size = max((seq - base) % 2**32 + len(p) for seq, p in segs)
    data, have = bytearray(size), bytearray(size)
    starts: set[int] = set()
    ends: set[int] = set()
    for seq, payload in segs:
        off = (seq - base) % 2**32
        starts.add(off)
        ends.add(off + len(payload))
        for i, b in enumerate(payload):
            if not have[off + i]:
                data[off + i], have[off + i] = b, 1
    return bytes(data), starts, ends


def pdus(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, type, body) of each PDU in a byte stream."""
    out, pos = [], 0
    while pos + 6 <= len(data):
        t, n = struct.unpack_from(">BxI", data, pos)
        out.append((pos, t, data[pos + 6 : pos + 6 + n]))
        pos += 6 + n
    return out


def command_controls(data: bytes) -> list[int]:
    """Message control header of each command PDV in the stream, in order."""
    out = []
    for _off, t, body in pdus(data):
        if t != 4:
            continue
        pos = 0
        while pos + 6 <= len(body):
            length, _cid, control = struct.unpack_from(">IBB", body, pos)
            if control & 1:
                out.append(control)
            pos += 4 + length
    return out


def main() -> int:
    scenario, path, client_net = sys.argv[1], sys.argv[2], sys.argv[3]
    conns = segments(path, client_net)
    ok = True
    if scenario == "reserved-bits":
        for key, segs in conns.items():
            data, _, _ = stream(segs)
            controls = command_controls(data)
            print(f"{key}: command PDV control bytes {' '.join(f'0x{c:02x}' for c in controls)}")
            ok &= bool(controls) and all(c & 0xFC for c in controls)
    elif scenario == "split-header":
        for k, (key, segs) in enumerate(conns.items()):
            data, starts, ends = stream(segs)
            found = []
            for off, t, _ in pdus(data):
                good = off in starts and (k == 0 or (off + k in ends and off + k in starts))
                found.append(f"0x{t:02x}@{off}{'' if good else '!'}")
                ok &= good
            print(f"{key} K={k}: PDUs {' '.join(found)} (! = boundary missing)")
        ok &= len(conns) == 6
    elif scenario in ("overlap-held", "overlap-retransmit"):
        found = False
        for key, segs in conns.items():
            for i, (seq, first) in enumerate(segs):
                for j in range(i + 1, len(segs)):
                    seq2, second = segs[j]
                    if seq2 != seq or len(second) != len(first) or second == first:
                        continue
                    # Did a segment that starts before them reach them after both arrived
                    # (they were out of order), and did it stop short of them?
                    def reaches(n: int, seq: int = seq) -> bool:
                        start, data = segs[n]
                        return (0 < (seq - start) % 2**32 < 2**31
                                and (start + len(data) - seq) % 2**32 < 2**31)  # fmt: skip

                    filler = next((n for n in range(j + 1, len(segs)) if reaches(n)), None)
                    held = filler is not None
                    covered = held and (segs[filler][0] + len(segs[filler][1]) - seq
                                        - len(first)) % 2**32 < 2**31  # fmt: skip
                    print(f"{key}: seq {seq}: copies #{i} and #{j} of {len(first)} bytes, first "
                          f"names EXFIL: {b'EXFIL' in first}, second names EVIL-SCU: "
                          f"{b'EVIL-SCU' in second}; both out of order (a later segment "
                          f"fills the hole before them): {held}; the filler covers them too: "
                          f"{covered}")  # fmt: skip
                    ok &= b"EXFIL" in first and b"EVIL-SCU" in second
                    ok &= held == (scenario == "overlap-held") and not covered
                    found = True
                    break  # the first differing pair only: later copies are the kernel's
                if found:
                    break
        ok &= found
    else:
        print(f"unknown scenario {scenario}")
        return 2
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
