"""Generate the benchmark capture of issue 7 and a truth file of the DICOM associations in it.

Usage (from the repository root, with the project's venv)::

    python bench/generate.py                        # 1.4M packets -> bench/data/bench.pcap
    python bench/generate.py --seed 7 --packets 200000 --out /tmp/small.pcap
    python bench/generate.py --worst-case --packets 100000 --out bench/data/worst.pcap
    python bench/generate.py --many-flows --packets 1000000 --out bench/data/flows.pcap
    python bench/generate.py --imaging                # 400k packets -> bench/data/imaging.pcap
    python bench/generate.py --span-hospital          # 1.5M packets -> bench/data/span.pcap

Writes a classic pcap (Ethernet, microsecond timestamps) and ``OUT.truth.json``: every
spliced DICOM association (requestor and acceptor endpoints, AE titles, result, end, DIMSE
counts, taken from ``pcaps/<case>/expected.json``) plus the packet counts by kind, the DICOM
share of packets and frame bytes, and the number of distinct services (acceptor address, port)
and of associations (``services``, ``association_count``). The same seed and arguments give a
byte-identical file.

Modes:

- default: mostly non-DICOM background (HTTP, TLS-like, DNS over UDP, PostgreSQL- and
  MySQL-shaped flows, decoys on ports 104/11112/4242 that are not DICOM: random bytes, HTTP,
  0x01 0x00 junk, some of it shaped to pass the sensor's BPF head filter), about 10% IPv6,
  some 802.1Q tags, real handshakes and FINs, valid IPv4/TCP/UDP checksums; the real-peer
  sessions of ``pcaps/*/capture.pcap`` spliced in (new addresses, client ports, sequence
  numbers and times per copy) until DICOM packets are ``--dicom-fraction`` of the total.
- ``--worst-case``: every packet is DICOM: copies of the dcmtk-store-11112 and
  pynetdicom-store-loopback C-STORE sessions with overlapping times (``--parallel``).
- ``--many-flows``: hundreds of thousands of short TCP flows (2-9 packets each: scans, tiny
  request/response pairs) plus the spliced DICOM sessions.
- ``--imaging`` and ``--span-hospital`` (``hospital.py``): hospital scale. Every spliced
  acceptor is a service of its own (``Services``: new address or port, mostly 104, 11112 and
  4242); store associations carry their DIMSE exchange repeated (``repeat_span``). The imaging
  VLAN is 96% DICOM packets (about 99% of bytes) to at least ``--services`` 1,000 services in at
  least ``--associations`` 1,500 associations; the span port is 3% DICOM to at least 500
  services among the default background.

Speed: packets are built from precomputed headers and payload blocks with ``struct``; checksums
use the fact that the ones' complement sum of 16-bit words is the big-endian integer mod 65535.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"

TCP_H = struct.Struct("!HHIIBBHHH")
IP4_H = struct.Struct("!BBHHHBBH4s4s")
IP6_H = struct.Struct("!IHBB16s16s")
UDP_H = struct.Struct("!HHHH")
REC_H = struct.Struct("<IIII")
PCAP_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MSS4, MSS6 = 1460, 1440
# MSS, SACK permitted, NOP NOP, NOP window scale 7: 12 bytes
SYN_OPTS = bytes.fromhex("020405b40402010101030307")
SYN_OPTS6 = bytes.fromhex("020405a00402010101030307")
BASE_TS = 1_767_225_600  # 2026-01-01T00:00:00Z
POOL_BLOCKS = 512
STORE_CASES = ("dcmtk-store-11112", "pynetdicom-store-loopback")


def csum(total: int) -> int:
    """The Internet checksum of data whose 16-bit big-endian words add up to ``total``."""
    r = total % 0xFFFF
    return 0xFFFF - r if r else 0


def wsum(data: bytes) -> int:
    """Sum of the 16-bit words of ``data`` (zero-padded), reduced mod 65535."""
    v = int.from_bytes(data, "big")
    if len(data) & 1:
        v <<= 8
    return v % 0xFFFF


def mac(n: int) -> bytes:
    return b"\x02\x00" + (n & 0xFFFFFFFF).to_bytes(4, "big")


GATEWAY_MAC = bytes.fromhex("00005e0001fe")


def l2_header(dst: bytes, src: bytes, vlan: int | None, v6: bool) -> bytes:
    etype = b"\x86\xdd" if v6 else b"\x08\x00"
    if vlan is None:
        return dst + src + etype
    return dst + src + b"\x81\x00" + struct.pack("!H", vlan) + etype


def tcp_frame(
    l2: bytes,
    v6: bool,
    src: bytes,
    dst: bytes,
    asum: int,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    win: int,
    opts: bytes,
    payload: bytes,
    paysum: int,
    ipid: int,
    ttl: int,
    ipoff: int = 0x4000,
    tos: int = 0,
) -> bytes:
    """One Ethernet/IP/TCP frame with valid checksums; ``asum`` is the address words' sum."""
    thl = 20 + len(opts)
    tlen = thl + len(payload)
    off = thl << 2
    s = (
        asum
        + 6
        + tlen
        + sport
        + dport
        + (seq >> 16)
        + (seq & 0xFFFF)
        + (ack >> 16)
        + (ack & 0xFFFF)
        + (off << 8 | flags)
        + win
        + paysum
    )
    if opts:
        s += int.from_bytes(opts, "big")
    tcp = TCP_H.pack(sport, dport, seq, ack, off, flags, win, csum(s), 0)
    if v6:
        ip = IP6_H.pack(0x60000000 | (tos & 0xFFFFFFF), tlen, 6, ttl, src, dst)
    else:
        ilen = 20 + tlen
        ipc = csum(asum + 0x4500 + tos + ilen + ipid + ipoff + (ttl << 8 | 6))
        ip = IP4_H.pack(0x45, tos, ilen, ipid, ipoff, ttl, 6, ipc, src, dst)
    return l2 + ip + tcp + opts + payload


def udp_frame(
    l2: bytes,
    v6: bool,
    src: bytes,
    dst: bytes,
    asum: int,
    sport: int,
    dport: int,
    payload: bytes,
    ipid: int,
    ttl: int,
) -> bytes:
    ulen = 8 + len(payload)
    c = csum(asum + 17 + ulen + sport + dport + ulen + wsum(payload)) or 0xFFFF
    udp = UDP_H.pack(sport, dport, ulen, c)
    if v6:
        ip = IP6_H.pack(0x60000000, ulen, 17, ttl, src, dst)
    else:
        ilen = 20 + ulen
        ipc = csum(asum + 0x4500 + ilen + ipid + (ttl << 8 | 17))
        ip = IP4_H.pack(0x45, 0, ilen, ipid, 0, ttl, 17, ipc, src, dst)
    return l2 + ip + udp + payload


def addr_sum(a: bytes, b: bytes) -> int:
    return wsum(a) + wsum(b)


class Hosts:
    """Address pools: background clients and servers, DICOM modalities and archives."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_port: dict[bytes, int] = {}
        self.clients4 = [
            bytes([10, 1, i >> 8, i & 0xFF]) for i in rng.sample(range(1, 65000), 4000)
        ]
        self.clients6 = [_v6("fd00:1::", rng.getrandbits(64)) for _ in range(500)]
        self.web4 = [
            bytes([rng.choice((93, 104, 151, 172, 185)), *rng.randbytes(3)]) for _ in range(300)
        ]
        self.web6 = [_v6("2001:db8:80::", rng.getrandbits(32)) for _ in range(60)]
        self.db4 = [bytes([10, 2, 0, i]) for i in range(10, 40)]
        self.db6 = [_v6("fd00:2::", i) for i in range(10, 20)]
        self.dns4 = [bytes([10, 0, 0, 53]), bytes([10, 0, 0, 54])]
        self.dns6 = [_v6("fd00::", 0x53), _v6("fd00::", 0x54)]
        self.decoy4 = [bytes([10, 3, 0, i]) for i in range(1, 60)]
        self.decoy6 = [_v6("fd00:3::", i) for i in range(1, 10)]
        self.modality4 = [bytes([10, 20, i >> 8, i & 0xFF]) for i in range(1, 600)]
        self.modality6 = [_v6("fd00:20::", i) for i in range(1, 100)]
        self.pacs4 = [bytes([10, 30, 0, i]) for i in range(1, 9)]
        self.pacs6 = [_v6("fd00:30::", i) for i in range(1, 5)]

    def port(self, ip: bytes) -> int:
        """A fresh ephemeral port for ``ip``: 32768-60999, cycling."""
        p = self.next_port.get(ip)
        if p is None:
            p = self.rng.randint(32768, 60999)
        p = p + 1 if p < 60999 else 32768
        self.next_port[ip] = p
        return p


def _v6(prefix: str, low: int) -> bytes:
    base = int.from_bytes(socket.inet_pton(socket.AF_INET6, prefix), "big")
    return (base | low).to_bytes(16, "big")


def ip_text(a: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(a) == 16 else socket.AF_INET, a)


class Pool:
    """Random payload blocks of one MSS with their word sums, so bulk segments cost no sum."""

    def __init__(self, rng: random.Random) -> None:
        self.b4 = [rng.randbytes(MSS4) for _ in range(POOL_BLOCKS)]
        self.s4 = [wsum(b) for b in self.b4]
        self.b6 = [b[:MSS6] for b in self.b4]
        self.s6 = [wsum(b) for b in self.b6]


class Conn:
    """A TCP connection being generated: index 0 is the client, 1 the server."""

    __slots__ = ("asum", "ip", "ipid", "l2", "out", "port", "seq", "t", "ttl", "v6", "win")

    def __init__(
        self,
        out: list[tuple[int, bytes]],
        t: int,
        cip: bytes,
        sip: bytes,
        cport: int,
        sport: int,
        vlan: int | None,
        rng: random.Random,
    ) -> None:
        self.out = out
        self.t = t
        self.v6 = len(cip) == 16
        self.ip = (cip, sip)
        self.port = (cport, sport)
        cmac = mac(int.from_bytes(cip[-4:], "big"))
        self.l2 = (
            l2_header(GATEWAY_MAC, cmac, vlan, self.v6),
            l2_header(cmac, GATEWAY_MAC, vlan, self.v6),
        )
        self.asum = addr_sum(cip, sip)
        self.seq = [rng.getrandbits(32), rng.getrandbits(32)]
        self.ipid = [rng.getrandbits(16), rng.getrandbits(16)]
        self.ttl = (64, rng.choice((52, 56, 60, 63, 64, 116, 128)))
        self.win = (rng.choice((502, 1024, 4096, 64240)), rng.choice((509, 2048, 8192, 65160)))

    def send(
        self, d: int, dt: int, flags: int, payload: bytes = b"", ps: int = -1, opts: bytes = b""
    ) -> None:
        self.t += dt
        seq = self.seq[d]
        ack = self.seq[1 - d] if flags & ACK else 0
        if ps < 0:
            ps = wsum(payload) if payload else 0
        ipid = self.ipid[d]
        self.out.append(
            (
                self.t,
                tcp_frame(
                    self.l2[d],
                    self.v6,
                    self.ip[d],
                    self.ip[1 - d],
                    self.asum,
                    self.port[d],
                    self.port[1 - d],
                    seq,
                    ack,
                    flags,
                    self.win[d],
                    opts,
                    payload,
                    ps,
                    ipid,
                    self.ttl[d],
                ),
            )
        )
        self.ipid[d] = (ipid + 1) & 0xFFFF
        n = len(payload) + (1 if flags & (SYN | FIN) else 0)
        self.seq[d] = (seq + n) & 0xFFFFFFFF

    def handshake(self, rtt: int) -> None:
        opts = SYN_OPTS6 if self.v6 else SYN_OPTS
        self.send(0, 0, SYN, opts=opts)
        self.send(1, rtt // 2, SYN | ACK, opts=opts)
        self.send(0, rtt // 2, ACK)

    def close(self, d: int, rtt: int) -> None:
        self.send(d, 50, FIN | ACK)
        self.send(1 - d, rtt // 2, FIN | ACK)
        self.send(d, rtt // 2, ACK)

    def bulk(
        self, d: int, nbytes: int, head: bytes, pool: Pool, rng: random.Random, rtt: int
    ) -> None:
        """``head`` then ``nbytes`` in total from ``d``, MSS segments, the peer ACKs every other."""
        mss = MSS6 if self.v6 else MSS4
        blocks, sums = (pool.b6, pool.s6) if self.v6 else (pool.b4, pool.s4)
        sent = 0
        nseg = 0
        first = True
        while sent < nbytes:
            left = nbytes - sent
            if first and head:
                chunk = head[:mss]
                if len(chunk) < mss and left > len(chunk):
                    chunk += blocks[rng.randrange(POOL_BLOCKS)][: min(mss, left) - len(chunk)]
                ps = -1
            elif left >= mss:
                i = rng.randrange(POOL_BLOCKS)
                chunk, ps = blocks[i], sums[i]
            else:
                chunk = blocks[rng.randrange(POOL_BLOCKS)][:left]
                ps = -1
            first = False
            sent += len(chunk)
            nseg += 1
            last = sent >= nbytes
            self.send(d, rng.randint(5, 120), ACK | (PSH if last else 0), chunk, ps)
            if nseg % 2 == 0 or last:
                self.send(1 - d, rng.randint(20, 400) if not last else rtt // 2, ACK)


# -- background flows -------------------------------------------------------------------------


HTTP_PATHS = ["/", "/index.html", "/api/v1/items?page=2", "/static/app.js", "/img/logo.png",
              "/login", "/health", "/metrics", "/worklist/today", "/viewer/study/123"]  # fmt: skip
HOSTS = ["intranet.example.org", "pacs-web.example.org", "cdn.example.net", "api.example.com",
         "ris.hospital.example", "updates.example.com"]  # fmt: skip
DNS_NAMES = [f"{a}.{b}" for a in ("www", "api", "mail", "pacs", "ris", "cdn", "ntp", "ldap", "time",
                                  "wiki", "git", "proxy") for b in ("example.org", "example.com",
                                  "hospital.example", "radiology.example")]  # fmt: skip


def _http_request(rng: random.Random) -> bytes:
    return (
        f"GET {rng.choice(HTTP_PATHS)} HTTP/1.1\r\nHost: {rng.choice(HOSTS)}\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n"
        "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n"
        f"Cookie: session={rng.getrandbits(96):024x}\r\n\r\n"
    ).encode()


def _http_response_head(rng: random.Random, length: int) -> bytes:
    ctype = rng.choice(("text/html", "application/json", "image/png", "application/javascript"))
    return (
        f"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {length}\r\nCache-Control: max-age=600\r\n"
        f'ETag: "{rng.getrandbits(64):016x}"\r\n\r\n'
    ).encode()


def _response_size(rng: random.Random) -> int:
    # Mostly small objects, a long tail of large ones.
    return int(min(4_000_000, rng.lognormvariate(5.2, 1.8)))


def _client_hello(rng: random.Random, sni: str) -> bytes:
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    exts = (
        sni_ext
        + bytes.fromhex("000a000a0008001d001700180019")  # supported groups
        + bytes.fromhex("000d0012001004030503060308040805080604010501")  # signature algorithms
        + bytes.fromhex("002b0003020304")  # supported versions: TLS 1.3
        + struct.pack("!HHHHH", 0x33, 38, 36, 0x1D, 32)
        + rng.randbytes(32)  # key share x25519
    )
    suites = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8")
    body = (
        b"\x03\x03"
        + rng.randbytes(32)
        + b"\x20"
        + rng.randbytes(32)
        + struct.pack("!H", len(suites))
        + suites
        + b"\x01\x00"
        + struct.pack("!H", len(exts))
        + exts
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _tls_record(rng: random.Random, n: int, ctype: int = 0x17) -> bytes:
    return bytes((ctype, 3, 3)) + struct.pack("!H", n) + rng.randbytes(n)


def _dns_query(qid: int, name: str, qtype: int) -> bytes:
    q = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\x00"
    return (
        struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1)
        + q
        + struct.pack("!HH", qtype, 1)
        + (b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00")
    )


def _dns_answer(rng: random.Random, query: bytes, qtype: int) -> bytes:
    n = rng.randint(1, 3)
    qid = query[:2]
    body = query[12:-11]
    rr = b""
    for _ in range(n):
        rdata = rng.randbytes(16 if qtype == 28 else 4)
        rr += (
            b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, rng.randint(30, 3600), len(rdata)) + rdata
        )
    return qid + struct.pack("!HHHHH", 0x8180, 1, n, 0, 0) + body + rr


@dataclass(slots=True)
class Gen:
    """State shared by the flow generators."""

    rng: random.Random
    hosts: Hosts
    pool: Pool
    out: list[tuple[int, bytes]]
    span: int  # microseconds over which flows start
    vlan_share: float = 0.08
    v6_share: float = 0.10
    flows: int = 0

    def start(self) -> int:
        return self.rng.randrange(self.span)

    def vlan(self) -> int | None:
        return (
            self.rng.choice((10, 20, 30, 110, 200)) if self.rng.random() < self.vlan_share else None
        )

    def v6(self) -> bool:
        return self.rng.random() < self.v6_share

    def conn(self, servers4: list[bytes], servers6: list[bytes], sport: int) -> Conn:
        rng, h = self.rng, self.hosts
        v6 = self.v6()
        cip = rng.choice(h.clients6 if v6 else h.clients4)
        sip = rng.choice(servers6 if v6 else servers4)
        self.flows += 1
        return Conn(self.out, self.start(), cip, sip, h.port(cip), sport, self.vlan(), rng)

    def rtt(self) -> int:
        return int(self.rng.choice((300, 800, 2000, 15000, 40000)) * self.rng.uniform(0.7, 1.4))

    # Each generator appends one flow's packets to ``out``.

    def http(self) -> None:
        rng = self.rng
        c = self.conn(self.hosts.web4, self.hosts.web6, rng.choice((80, 80, 80, 8080)))
        rtt = self.rtt()
        c.handshake(rtt)
        for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
            c.send(0, rng.randint(100, 5000), ACK | PSH, _http_request(rng))
            size = _response_size(rng)
            c.bulk(1, size, _http_response_head(rng, size), self.pool, rng, rtt)
        c.close(rng.randint(0, 1), rtt)

    def tls(self) -> None:
        rng = self.rng
        c = self.conn(self.hosts.web4, self.hosts.web6, 443)
        rtt = self.rtt()
        c.handshake(rtt)
        c.send(0, 200, ACK | PSH, _client_hello(rng, rng.choice(HOSTS)))
        c.send(1, rtt // 2, ACK)
        hello = _tls_record(rng, 122, 0x16) + b"\x14\x03\x03\x00\x01\x01"
        c.bulk(1, rng.randint(2500, 4500), hello + _tls_record(rng, 1200), self.pool, rng, rtt)
        c.send(0, rtt // 2, ACK | PSH, b"\x14\x03\x03\x00\x01\x01" + _tls_record(rng, 58))
        for _ in range(rng.choice((1, 2, 3, 4, 8))):
            c.send(0, rng.randint(200, 30000), ACK | PSH, _tls_record(rng, rng.randint(30, 900)))
            c.bulk(1, _response_size(rng), _tls_record(rng, 60), self.pool, rng, rtt)
        c.send(0, 1000, ACK | PSH, _tls_record(rng, 19, 0x15))
        c.close(0, rtt)

    def dns(self) -> None:
        rng, h = self.rng, self.hosts
        v6 = self.v6()
        cip = rng.choice(h.clients6 if v6 else h.clients4)
        sip = rng.choice(h.dns6 if v6 else h.dns4)
        vlan = self.vlan()
        self.flows += 1
        cmac = mac(int.from_bytes(cip[-4:], "big"))
        l2q, l2r = l2_header(GATEWAY_MAC, cmac, vlan, v6), l2_header(cmac, GATEWAY_MAC, vlan, v6)
        asum = addr_sum(cip, sip)
        t = self.start()
        port = h.port(cip)
        for _ in range(rng.choice((1, 1, 2))):
            qtype = 28 if rng.random() < 0.3 else 1
            q = _dns_query(rng.getrandbits(16), rng.choice(DNS_NAMES), qtype)
            self.out.append(
                (t, udp_frame(l2q, v6, cip, sip, asum, port, 53, q, rng.getrandbits(16), 64))
            )
            t += rng.randint(200, 20000)
            if rng.random() < 0.95:
                a = _dns_answer(rng, q, qtype)
                self.out.append((t, udp_frame(l2r, v6, sip, cip, asum, 53, port, a, 0, 63)))
            t += rng.randint(10, 500)

    def database(self) -> None:
        rng = self.rng
        pg = rng.random() < 0.6
        c = self.conn(self.hosts.db4, self.hosts.db6, 5432 if pg else 3306)
        rtt = int(rng.uniform(100, 600))
        c.handshake(rtt)
        if pg:
            params = b"user\x00app\x00database\x00ris\x00application_name\x00worker\x00\x00"
            c.send(0, 100, ACK | PSH, struct.pack("!II", 8 + len(params), 196608) + params)
            c.send(1, rtt, ACK | PSH, b"R\x00\x00\x00\x08\x00\x00\x00\x00" + _pg_params(rng))
        else:
            greet = (b"\x0a8.0.36\x00" + rng.randbytes(4) + rng.randbytes(8) + b"\x00\xff\xf7\x21"
                     + b"\x02\x00\xff\xdf\x15" + bytes(10) + rng.randbytes(12) + b"\x00"
                     + b"caching_sha2_password\x00")  # fmt: skip
            c.send(1, 100, ACK | PSH, len(greet).to_bytes(3, "little") + b"\x00" + greet)
            auth = (
                b"\x8d\xa6\xff\x19\x00\x00\x00\x01\xff" + bytes(23) + b"app\x00" + rng.randbytes(33)
            )
            c.send(0, rtt, ACK | PSH, len(auth).to_bytes(3, "little") + b"\x01" + auth)
            c.send(1, rtt, ACK | PSH, b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00")
        for _ in range(rng.randint(1, 12)):
            table = rng.choice(("orders", "patients_synth", "worklist", "audit", "devices"))
            sql = f"SELECT * FROM {table} WHERE id > {rng.randint(1, 10**6)} LIMIT 50".encode()
            if pg:
                c.send(
                    0,
                    rng.randint(200, 50000),
                    ACK | PSH,
                    b"Q" + struct.pack("!I", len(sql) + 5) + sql + b"\x00",
                )
                rows = b"".join(_pg_row(rng) for _ in range(rng.randint(1, 30)))
                head = (
                    b"T\x00\x00\x00\x1e\x00\x01id\x00"
                    + bytes(18)
                    + rows
                    + b"C\x00\x00\x00\x0dSELECT\x00Z\x00\x00\x00\x05I"
                )
            else:
                c.send(
                    0,
                    rng.randint(200, 50000),
                    ACK | PSH,
                    (len(sql) + 1).to_bytes(3, "little") + b"\x00\x03" + sql,
                )
                head = b"\x01\x00\x00\x01\x03" + rng.randbytes(200)
            size = len(head) if rng.random() < 0.9 else rng.randint(len(head), 30000)
            c.bulk(1, size, head, self.pool, rng, rtt)
        if pg:
            c.send(0, 100, ACK | PSH, b"X\x00\x00\x00\x04")
        c.close(0, rtt)

    def decoy(self) -> None:
        """Traffic on DICOM ports that is not DICOM."""
        rng, h = self.rng, self.hosts
        port = rng.choice((104, 11112, 4242))
        servers4 = h.pacs4 if rng.random() < 0.2 else h.decoy4
        c = self.conn(servers4, h.decoy6, port)
        rtt = self.rtt()
        c.handshake(rtt)
        kind = rng.randrange(5)
        if kind == 0:  # random bytes both ways
            c.send(0, 300, ACK | PSH, rng.randbytes(rng.randint(12, 1460)))
            c.bulk(1, rng.randint(20, 20000), b"", self.pool, rng, rtt)
        elif kind == 1:  # HTTP on a DICOM port
            c.send(0, 300, ACK | PSH, _http_request(rng))
            c.bulk(
                1,
                300,
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
                self.pool,
                rng,
                rtt,
            )
        elif kind == 2:  # 0x01 0x00 and junk
            c.send(0, 300, ACK | PSH, b"\x01\x00" + rng.randbytes(rng.randint(10, 1000)))
        elif kind == 3:  # passes the BPF head filter (version 1 at offset 6), fails the probe
            junk = (
                b"\x01\x00"
                + struct.pack("!I", rng.randint(69, 4000))
                + b"\x00\x01"
                + bytes((0x80 + rng.randrange(0x7F),))
                + rng.randbytes(rng.randint(80, 600))
            )
            c.send(0, 300, ACK | PSH, junk)
            c.send(1, rtt // 2, ACK)
            c.bulk(0, rng.randint(100, 5000), b"", self.pool, rng, rtt)
        else:  # an A-ASSOCIATE-RQ-sized header with a PDU length too short to be one
            c.send(0, 300, ACK | PSH, b"\x01\x00\x00\x00\x00\x20\x00\x01" + rng.randbytes(32))
            c.send(1, rtt // 2, ACK | PSH, rng.randbytes(10))
        c.close(rng.randint(0, 1), rtt)

    def short(self) -> None:
        """A short TCP flow for the many-flows case: a scan probe or a tiny exchange."""
        rng = self.rng
        c = self.conn(
            self.hosts.web4 + self.hosts.db4,
            self.hosts.web6,
            rng.choice((80, 443, 8080, 22, 25, 3389, 5432, 104)),
        )
        rtt = int(rng.uniform(100, 3000))
        kind = rng.random()
        if kind < 0.5:
            c.send(0, 0, SYN, opts=SYN_OPTS6 if c.v6 else SYN_OPTS)
            if rng.random() < 0.7:
                c.send(1, rtt, RST | ACK)
        else:
            c.handshake(rtt)
            c.send(0, 100, ACK | PSH, _http_request(rng)[: rng.randint(40, 300)])
            c.send(1, rtt, ACK | PSH, rng.randbytes(rng.randint(20, 600)))
            if rng.random() < 0.5:
                c.send(0, 50, RST | ACK)
            else:
                c.close(0, rtt)


def _pg_params(rng: random.Random) -> bytes:
    out = b""
    for k, v in (("server_version", "16.2"), ("client_encoding", "UTF8"), ("TimeZone", "UTC")):
        body = k.encode() + b"\x00" + v.encode() + b"\x00"
        out += b"S" + struct.pack("!I", len(body) + 4) + body
    return out + b"K\x00\x00\x00\x0c" + rng.randbytes(8) + b"Z\x00\x00\x00\x05I"


def _pg_row(rng: random.Random) -> bytes:
    val = f"{rng.randint(1, 10**9)}|{rng.getrandbits(80):020x}".encode()
    return b"D" + struct.pack("!IHI", len(val) + 10, 1, len(val)) + val


# -- DICOM sessions from pcaps/ ---------------------------------------------------------------


@dataclass(slots=True)
class Seg:
    """One captured TCP segment of a case, relative to its case's first packet."""

    dt: int  # microseconds since the case's first packet
    from_client: bool
    seq: int
    ack: int
    flags: int
    win: int
    opts: bytes
    payload: bytes
    paysum: int
    ipid: int
    ttl: int
    ipoff: int
    tos: int


@dataclass(slots=True)
class CaseConn:
    client: tuple[bytes, int]
    server: tuple[bytes, int]
    expected: dict[str, Any]
    segs: list[Seg] = field(default_factory=list)


@dataclass(slots=True)
class Case:
    name: str
    conns: list[CaseConn]
    packets: int
    archive_ips: set[bytes]


def load_case(folder: Path) -> Case:
    """The case's TCP connections in order of first SYN, each with its expected.json entry."""
    expected = json.loads((folder / "expected.json").read_text())
    conns: dict[tuple[Any, ...], CaseConn] = {}
    order: list[CaseConn] = []
    t0 = None
    n = 0
    with (folder / "capture.pcap").open("rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            n += 1
            t = round(ts * 1e6)
            t0 = t if t0 is None else t0
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            a, b = (ip.src, tcp.sport), (ip.dst, tcp.dport)
            key = (a, b) if (a, b) in conns else (b, a)
            conn = conns.get(key)
            if conn is None:
                if not (tcp.flags & SYN and not tcp.flags & ACK):
                    raise SystemExit(f"{folder.name}: connection without a SYN first")
                conn = conns[(a, b)] = CaseConn(a, b, {})
                order.append(conn)
            if isinstance(ip, dpkt.ip6.IP6):
                ipid, ttl, ipoff, tos = 0, ip.hlim, 0, ip._v_fc_flow & 0xFFFFFFF
            else:
                ipid, ttl, ipoff, tos = ip.id, ip.ttl, ip._flags_offset, ip.tos
            payload = bytes(tcp.data)
            conn.segs.append(
                Seg(t - t0, (ip.src, tcp.sport) == conn.client, tcp.seq, tcp.ack, tcp.flags,
                    tcp.win, bytes(tcp.opts), payload, wsum(payload), ipid, ttl, ipoff, tos)
            )  # fmt: skip
    if len(order) != len(expected):
        raise SystemExit(f"{folder.name}: {len(order)} connections, {len(expected)} expected")
    for conn, exp in zip(order, expected, strict=True):
        if conn.server[1] != exp["acceptor_port"] or ip_text(conn.client[0]) != exp["requestor_ip"]:
            raise SystemExit(f"{folder.name}: connection order does not match expected.json")
        conn.expected = exp
    archives = {order[0].server[0]}
    return Case(folder.name, order, n, archives)


def load_cases(names: list[str] | None = None) -> list[Case]:
    """The real-peer cases (``derived-*`` folders are made from them by a script: skipped)."""
    folders = sorted(p.parent for p in PCAPS.glob("*/capture.pcap"))
    folders = [f for f in folders if not f.name.startswith("derived-")]
    return [load_case(f) for f in folders if names is None or f.name in names]


def _sack_shift(opts: bytes, delta: int) -> bytes:
    """Shift the edges of SACK blocks (option 5) by ``delta``."""
    out = bytearray(opts)
    i = 0
    while i < len(out):
        kind = out[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        length = out[i + 1]
        if kind == 5:
            for j in range(i + 2, i + length, 4):
                v = (int.from_bytes(out[j : j + 4], "big") + delta) & 0xFFFFFFFF
                out[j : j + 4] = v.to_bytes(4, "big")
        i += max(length, 2)
    return bytes(out)


# Ports of services on a hospital network: the plain DICOM ports mostly, then any port a
# vendor chose (below the ephemeral range, so no requestor port can equal a service's).
SERVICE_PORTS = ((104, 0.40), (11112, 0.30), (4242, 0.15))
NOT_DICOM_PORTS = frozenset({1433, 1521, 2575, 2762, 3306, 3389, 5432, 8080, 8443})


class Services:
    """Distinct DICOM services (acceptor address, port): one new one per spliced acceptor.

    Acceptor nodes are 10.40.0.0/16 (fd00:40::/64 for IPv6); about a third of the new services
    land on a node that already has one, so some nodes listen on several ports.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[tuple[bytes, int]] = set()
        self.nodes4: list[bytes] = []
        self.nodes6: list[bytes] = []

    def __len__(self) -> int:
        return len(self.used)

    def node(self, v6: bool) -> bytes:
        """An acceptor's address: an existing node (30%) or a new one."""
        rng = self.rng
        nodes = self.nodes6 if v6 else self.nodes4
        if nodes and rng.random() < 0.3:
            return rng.choice(nodes)
        n = len(nodes)
        if v6:
            ip = _v6("fd00:40::", n + 1)
        else:
            if n >= 254 * 256:
                raise SystemExit("more than 65,024 acceptor nodes")
            ip = bytes([10, 40, n // 254, n % 254 + 1])
        nodes.append(ip)
        return ip

    def port(self, ip: bytes) -> int:
        """A port on ``ip`` that no service there has yet."""
        rng = self.rng
        while True:
            r = rng.random()
            port = 0
            for p, share in SERVICE_PORTS:
                if r < share:
                    port = p
                    break
                r -= share
            if not port:
                port = rng.randint(1024, 32767)
                if port in NOT_DICOM_PORTS:
                    continue
            if (ip, port) not in self.used:
                self.used.add((ip, port))
                return port


def repeat_span(conn: CaseConn) -> tuple[int, int] | None:
    """Segments ``[i0, i1)`` that carry an association's whole DIMSE exchange, or None.

    ``i0`` starts the requestor's first P-DATA-TF, ``i1`` its A-RELEASE-RQ. The span can be
    repeated as is when, in both directions, its bytes start and end on PDU boundaries and
    hold every P-DATA-TF PDU and nothing else, with no retransmission and no SYN/FIN/RST.
    """
    e = conn.expected
    if e.get("result") != "accepted" or e.get("end") != "released":
        return None
    segs = conn.segs
    streams: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
    offsets: list[int] = []  # bytes sent in the segment's direction before each segment
    nxt: dict[bool, int] = {}
    for s in segs:
        d = s.from_client
        offsets.append(len(streams[d]))
        if s.payload:
            if d in nxt and s.seq != nxt[d]:
                return None  # a retransmission, a gap or reordering
            nxt[d] = (s.seq + len(s.payload)) & 0xFFFFFFFF
            streams[d] += s.payload
    pdus: dict[bool, list[tuple[int, int, int]]] = {}  # (start, end, type) per direction
    for d, data in streams.items():
        out, o = [], 0
        while o + 6 <= len(data):
            end = o + 6 + int.from_bytes(data[o + 2 : o + 6], "big")
            out.append((o, end, data[o]))
            o = end
        if o != len(data):
            return None
        pdus[d] = out
    starts = {o: i for i, o in enumerate(offsets) if segs[i].from_client and segs[i].payload}
    first_pdata = next((p for p in pdus[True] if p[2] == 0x04), None)
    release = next((p for p in pdus[True] if p[2] == 0x05), None)
    if first_pdata is None or release is None:
        return None
    i0, i1 = starts.get(first_pdata[0]), starts.get(release[0])
    if i0 is None or i1 is None or i0 >= i1:
        return None
    if any(s.flags & (SYN | FIN | RST) for s in segs[i0:i1]):
        return None
    for d, ps in pdus.items():
        total = len(streams[d])
        a = next((offsets[i] for i in range(i0, len(segs)) if segs[i].from_client is d), total)
        b = next((offsets[i] for i in range(i1, len(segs)) if segs[i].from_client is d), total)
        for start, end, kind in ps:
            inside = a <= start and end <= b
            if (kind == 0x04) != inside or (not inside and start < b and end > a):
                return None
    return i0, i1


def repeated_segs(conn: CaseConn, span: tuple[int, int], rounds: int) -> list[Seg]:
    """The connection's segments with the span ``[i0, i1)`` played ``rounds`` times in a row:
    sequence and acknowledgement numbers (SACK edges too) and times move on by one span's
    bytes and duration per round."""
    i0, i1 = span
    segs = conn.segs
    body = segs[i0:i1]
    sent = {True: 0, False: 0}
    for s in body:
        sent[s.from_client] += len(s.payload)
    dur = segs[i1].dt - segs[i0].dt

    def shifted(s: Seg, k: int) -> Seg:
        own, peer = k * sent[s.from_client], k * sent[not s.from_client]
        ack = (s.ack + peer) & 0xFFFFFFFF if s.flags & ACK else s.ack
        opts = _sack_shift(s.opts, peer) if s.opts and b"\x05" in s.opts else s.opts
        return Seg(s.dt + k * dur, s.from_client, (s.seq + own) & 0xFFFFFFFF, ack, s.flags,
                   s.win, opts, s.payload, s.paysum, s.ipid, s.ttl, s.ipoff, s.tos)  # fmt: skip

    out = list(segs[:i0])
    for k in range(rounds):
        out.extend(shifted(s, k) if k else s for s in body)
    out.extend(shifted(s, rounds - 1) for s in segs[i1:])
    return out


class Splicer:
    """Writes copies of the real-peer cases at new addresses, ports, sequence numbers and times.

    Without ``services`` the acceptors keep their case's port on one of a few archive
    addresses. With it, every acceptor (address, port) of a copy is a service of its own.
    """

    def __init__(
        self,
        rng: random.Random,
        hosts: Hosts,
        out: list[tuple[int, bytes]],
        services: Services | None = None,
    ) -> None:
        self.rng = rng
        self.hosts = hosts
        self.out = out
        self.services = services
        self.truth: list[dict[str, Any]] = []
        self.packets = 0
        self.bytes = 0  # frame bytes
        self.copies: Counter[str] = Counter()
        self._spans: dict[int, tuple[int, int] | None] = {}
        self._repeated: dict[tuple[int, int], list[Seg]] = {}

    def span(self, conn: CaseConn) -> tuple[int, int] | None:
        """The connection's repeatable DIMSE exchange (cached), see :func:`repeat_span`."""
        key = id(conn)
        if key not in self._spans:
            self._spans[key] = repeat_span(conn)
        return self._spans[key]

    def segments(self, conn: CaseConn, rounds: int) -> tuple[list[Seg], int]:
        """The segments to splice and how many times the DIMSE exchange is in them."""
        if rounds <= 1 or "C-STORE-RQ" not in conn.expected.get("dimse", {}):
            return conn.segs, 1
        span = self.span(conn)
        if span is None:
            return conn.segs, 1
        key = (id(conn), rounds)
        segs = self._repeated.get(key)
        if segs is None:
            segs = self._repeated[key] = repeated_segs(conn, span, rounds)
        return segs, rounds

    def splice(self, case: Case, t0: int, vlan: int | None, rounds: int = 1) -> None:
        """One copy of ``case`` from ``t0``; its C-STORE associations carry their DIMSE
        exchange ``rounds`` times over (where it can be repeated: :func:`repeat_span`)."""
        rng, h, services = self.rng, self.hosts, self.services
        v6 = len(case.conns[0].client[0]) == 16
        mapping: dict[tuple[bytes, bool], bytes] = {}

        def new_ip(ip: bytes, archive: bool) -> bytes:
            key = (ip, archive)
            if key not in mapping:
                if archive and services is not None:
                    mapping[key] = services.node(v6)
                elif archive:
                    mapping[key] = rng.choice(h.pacs6 if v6 else h.pacs4)
                else:
                    pool = h.modality6 if v6 else h.modality4
                    used = set(mapping.values())
                    mapping[key] = rng.choice([a for a in pool if a not in used] or pool)
            return mapping[key]

        ports: dict[tuple[bytes, int], int] = {}  # the copy's services: case port -> new port
        self.copies[case.name] += 1
        for conn in case.conns:
            # The archive is the first connection's server; a loopback case has one address
            # for both ends, so the role decides there.
            c_arch = conn.client[0] in case.archive_ips and conn.client[0] != conn.server[0]
            cip = new_ip(conn.client[0], c_arch)
            sip = new_ip(conn.server[0], conn.server[0] in case.archive_ips)
            cport, sport = h.port(cip), conn.server[1]
            if services is not None:
                key = (sip, sport)
                if key not in ports:
                    ports[key] = services.port(sip)
                sport = ports[key]
            segs, times = self.segments(conn, rounds)
            cmac = mac(int.from_bytes(cip[-4:], "big"))
            smac = mac(int.from_bytes(sip[-4:], "big"))
            l2c = l2_header(smac, cmac, vlan, v6)
            l2s = l2_header(cmac, smac, vlan, v6)
            asum = addr_sum(cip, sip)
            dc, ds = rng.getrandbits(32), rng.getrandbits(32)
            out = self.out
            size = 0
            for s in segs:
                if s.from_client:
                    l2, src, dst, sp, dp, dseq, dack = l2c, cip, sip, cport, sport, dc, ds
                else:
                    l2, src, dst, sp, dp, dseq, dack = l2s, sip, cip, sport, cport, ds, dc
                seq = (s.seq + dseq) & 0xFFFFFFFF
                ack = (s.ack + dack) & 0xFFFFFFFF if s.flags & ACK else s.ack
                opts = _sack_shift(s.opts, dack) if s.opts and b"\x05" in s.opts else s.opts
                frame = tcp_frame(l2, v6, src, dst, asum, sp, dp, seq, ack, s.flags, s.win, opts,
                                  s.payload, s.paysum, s.ipid, s.ttl, s.ipoff, s.tos)  # fmt: skip
                out.append((t0 + s.dt, frame))
                size += len(frame)
            self.packets += len(segs)
            self.bytes += size
            e = conn.expected
            self.truth.append(
                {
                    "case": case.name,
                    "requestor_ip": ip_text(cip),
                    "requestor_port": cport,
                    "acceptor_ip": ip_text(sip),
                    "acceptor_port": sport,
                    "vlan": vlan,
                    "first_ts": (t0 + conn.segs[0].dt) / 1e6 + BASE_TS,
                    "calling_ae_title": e["calling_ae_title"],
                    "called_ae_title": e["called_ae_title"],
                    "result": e["result"],
                    "end": e["end"],
                    "dimse": {k: v * times for k, v in e["dimse"].items()},
                }
            )


def _plan_copies(cases: list[Case], budget: int) -> list[Case]:
    """Cases to splice: the largest that fits half the budget (bulk transfers), then rounds
    over every case, smallest first, while they fit the budget."""
    by_size = sorted(cases, key=lambda c: (c.packets, c.name))
    plan: list[Case] = []
    left = budget
    big = [c for c in by_size if c.packets <= budget // 2]
    if big:
        plan.append(big[-1])
        left -= big[-1].packets
    while True:
        added = False
        for case in by_size:
            if case.packets <= left:
                plan.append(case)
                left -= case.packets
                added = True
        if not added:
            break
    if not plan:
        plan.append(by_size[0])
    return plan


# -- output -----------------------------------------------------------------------------------


def write_pcap(path: Path, packets: list[tuple[int, bytes]]) -> int:
    """Sort by time (stable) and write; the file size."""
    packets.sort(key=lambda p: p[0])
    pack = REC_H.pack
    size = 0
    with path.open("wb", buffering=1 << 22) as fh:
        fh.write(PCAP_GLOBAL)
        size += len(PCAP_GLOBAL)
        w = fh.write
        for t, frame in packets:
            sec, usec = divmod(t, 1_000_000)
            n = len(frame)
            w(pack(BASE_TS + sec, usec, n, n))
            w(frame)
            size += 16 + n
    return size


BACKGROUND = {"http": 0.33, "tls": 0.30, "dns": 0.12, "database": 0.19, "decoy": 0.06}


def fill_background(gen: Gen, target: int, weights: dict[str, float], kinds: Counter[str]) -> None:
    """Append ``target`` packets of background flows (``weights``: packet shares by kind)."""
    rng, hosts, out = gen.rng, gen.hosts, gen.out
    target = max(0, target)  # the DICOM part may already be over the packet count
    made = 0
    kind = ""
    while target - made > 40:
        kind = max(weights, key=lambda k: weights[k] * (made + 1) - kinds[k])
        before = len(out)
        getattr(gen, kind)()
        kinds[kind] += len(out) - before
        made += len(out) - before
    if made > target:  # the last flow overshot: trim its tail
        del out[len(out) - (made - target) :]
        kinds[kind] -= made - target
        made = target
    while made < target:  # unanswered DNS queries fill the rest
        v6 = rng.random() < 0.1
        cip = rng.choice(hosts.clients6 if v6 else hosts.clients4)
        sip = rng.choice(hosts.dns6 if v6 else hosts.dns4)
        q = _dns_query(rng.getrandbits(16), rng.choice(DNS_NAMES), 1)
        l2 = l2_header(GATEWAY_MAC, mac(int.from_bytes(cip[-4:], "big")), None, v6)
        out.append(
            (
                gen.start(),
                udp_frame(l2, v6, cip, sip, addr_sum(cip, sip), hosts.port(cip), 53, q, 1, 64),
            )
        )
        kinds["dns"] += 1
        made += 1


def generate(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    hosts = Hosts(rng)
    pool = Pool(rng)
    out: list[tuple[int, bytes]] = []
    span = max(1, args.packets // 25) * 1000  # about 25k packets/s
    gen = Gen(rng, hosts, pool, out, span)
    hospital_mode = args.imaging or args.span_hospital
    splicer = Splicer(rng, hosts, out, Services(rng) if hospital_mode else None)
    kinds: Counter[str] = Counter()

    if args.worst_case:
        mode = "worst-case"
        cases = load_cases(list(STORE_CASES))
        durations = {c.name: max(s.dt for cc in c.conns for s in cc.segs) for c in cases}
        mean_pkts = sum(c.packets for c in cases) / len(cases)
        copies = max(1, int(args.packets / mean_pkts))
        mean_dur = sum(durations.values()) / len(durations)
        window = max(1, int(copies * mean_dur / max(1, args.parallel)))
        i = 0
        while True:
            case = cases[i % len(cases)]
            if splicer.packets + case.packets > args.packets and i:
                break
            splicer.splice(case, rng.randrange(window), gen.vlan())
            i += 1
    elif hospital_mode:
        import hospital  # bench/ is on sys.path: this script's folder, or put there

        mode = "imaging" if args.imaging else "span-hospital"
        shape = hospital.shape_for(mode, args)
        hospital.splice_hospital(splicer, gen, load_cases(), shape)
        fill_background(gen, args.packets - splicer.packets, BACKGROUND, kinds)
    else:
        mode = "many-flows" if args.many_flows else "default"
        cases = load_cases()
        budget = round(args.packets * args.dicom_fraction)
        plan = _plan_copies(cases, budget)
        rng.shuffle(plan)
        for case in plan:
            splicer.splice(case, rng.randrange(span), gen.vlan())
        weights = {"short": 1.0} if args.many_flows else BACKGROUND
        fill_background(gen, args.packets - splicer.packets, weights, kinds)
    kinds["dicom"] = splicer.packets
    size = write_pcap(args.out, out)
    frame_bytes = size - len(PCAP_GLOBAL) - REC_H.size * len(out)
    services = {(a["acceptor_ip"], a["acceptor_port"]) for a in splicer.truth}
    return {
        "mode": mode,
        "seed": args.seed,
        "packets": len(out),
        "bytes": size,
        "dicom_packets": splicer.packets,
        "dicom_packet_share": round(splicer.packets / max(1, len(out)), 4),
        "frame_bytes": frame_bytes,
        "dicom_frame_bytes": splicer.bytes,
        "dicom_byte_share": round(splicer.bytes / max(1, frame_bytes), 4),
        "services": len(services),
        "association_count": len(splicer.truth),
        "background_flows": gen.flows,
        "packets_by_kind": dict(sorted(kinds.items())),
        "case_copies": dict(sorted(splicer.copies.items())),
        "associations": sorted(splicer.truth, key=lambda a: a["first_ts"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--packets",
        type=int,
        help="packets in the capture (default 1,400,000; --imaging 400,000; "
        "--span-hospital 1,500,000)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="default bench/data/bench.pcap (imaging.pcap, span.pcap for the hospital modes)",
    )
    parser.add_argument(
        "--dicom-fraction",
        type=float,
        help="share of packets that are spliced DICOM (default 0.0003; --imaging 0.96, "
        "--span-hospital 0.03)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--worst-case", action="store_true", help="every packet DICOM (C-STOREs)")
    mode.add_argument("--many-flows", action="store_true", help="short non-DICOM TCP flows")
    mode.add_argument("--imaging", action="store_true",
                      help="an imaging VLAN: DICOM bytes, >= 1,000 services")  # fmt: skip
    mode.add_argument("--span-hospital", action="store_true",
                      help="a hospital span port: 3%% DICOM, >= 500 services")  # fmt: skip
    parser.add_argument("--parallel", type=int, default=64,
                        help="worst case: about this many associations at once")  # fmt: skip
    parser.add_argument("--services", type=int,
                        help="hospital modes: at least this many DICOM services "
                        "(default 1,000 imaging, 500 span)")  # fmt: skip
    parser.add_argument("--associations", type=int,
                        help="hospital modes: at least this many associations "
                        "(default 1,500 imaging, 0 span)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.imaging:
        packets, fraction, name = 400_000, 0.96, "imaging.pcap"
    elif args.span_hospital:
        packets, fraction, name = 1_500_000, 0.03, "span.pcap"
    else:
        packets, fraction, name = 1_400_000, 0.0003, "bench.pcap"
    args.packets = packets if args.packets is None else args.packets
    args.dicom_fraction = fraction if args.dicom_fraction is None else args.dicom_fraction
    args.out = ROOT / "bench" / "data" / name if args.out is None else args.out
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    truth = generate(args)
    truth_path = Path(f"{args.out}.truth.json")
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")
    print(
        f"{args.out}: {truth['packets']} packets, {truth['bytes'] / 1e6:.1f} MB, "
        f"{truth['dicom_packets']} DICOM packets ({truth['dicom_packet_share']:.2%}, "
        f"{truth['dicom_byte_share']:.2%} of frame bytes) in {truth['association_count']} "
        f"associations to {truth['services']} services "
        f"({truth['mode']}, seed {args.seed}) in {time.perf_counter() - started:.1f} s; "
        f"truth: {truth_path}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    # hospital.py imports this module by name: let it find this run rather than load a copy.
    sys.modules.setdefault("generate", sys.modules["__main__"])
    sys.exit(main())
