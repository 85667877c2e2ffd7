/*
 * The compiled packet loop for the second pass over a classic pcap file of Ethernet frames.
 *
 * Python keeps every decision; this loop only does what Python told it to, without a
 * Python object per packet:
 *   - a packet of no followed service (acceptor address and port) or connection is dropped,
 *     as the second pass's BPF filter would drop it;
 *   - a packet of a flow with a skip entry is absorbed by arithmetic when it is a pure ACK,
 *     or the exactly-next data segment of the entry's direction that ends within the entry's
 *     window (bytes the dissector session only counts: inside a data set);
 *   - anything else (SYN, FIN, RST, out of order, past the window, snaplen cut, not plain
 *     IPv4/IPv6 TCP) goes to Python as (ts, frame, wire length, report or None), where the
 *     report is what the flow's entry absorbed since Python last heard of it.
 *
 * An entry keeps a copy of the bytes it absorbed until the peer's ACK passes them, in a ring
 * of the size Python gave (its unacknowledged-bytes cap): a retransmission of absorbed bytes
 * is out of order here, so it goes to Python, and the final report hands Python that copy
 * to compare it with. Bytes pushed out of a full ring are counted, never silently lost. The
 * cap covers what Python itself kept before the entry (pre) too, oldest first, exactly as
 * Python's own cap would have: the bytes of pre it pushed out are reported for Python to drop.
 *
 * Keys are bytes: the two endpoints (address bytes + big-endian port), lower first by
 * memcmp, then the VLAN id (0xffff for none). Python builds the same keys (fastpath.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10
#define NO_VLAN 0xffff
#define MAX_KEY (2 * (16 + 2) + 2)

typedef struct {
    uint32_t next_seq;  /* the next byte expected in the data direction */
    uint32_t end;       /* the window ends before this sequence number */
    int data_dir;       /* 0: the lower endpoint sends the data, 1: the higher */
    uint64_t bytes;     /* absorbed since the last report */
    uint64_t data_packets;
    uint64_t ack_packets;
    double last_ts;
    unsigned char *ring; /* absorbed bytes not yet acknowledged, ending at next_seq */
    uint32_t cap;        /* the ring's size; 0: keep nothing */
    uint32_t head;       /* ring index of the oldest kept byte */
    uint32_t kept;       /* bytes kept */
    uint64_t dropped;    /* pushed out of the full ring unacknowledged, since the last report */
    uint32_t start_seq;  /* where the entry began: Python keeps pre bytes before it */
    uint32_t pre;        /* of those, the ones neither acknowledged nor pushed out yet */
    uint64_t pre_dropped; /* of dropped, the bytes of pre, since the last report */
    int64_t ack_data;    /* the highest ACK of the data direction's bytes, or -1 */
    int64_t ack_other;   /* the highest ACK the data direction sent, or -1 */
    int need_ack;        /* Python saw no ACK of the peer yet: the first goes to Python, which
                          * keeps copies of delivered bytes from then on (a new entry does) */
    /* DICOM P-DATA framing (framed entries only): the window is the current data-set PDV;
     * a segment running past it may cross into the next PDV (and PDU) of the same data
     * set when its headers are plain (see cross()). */
    int framed;
    uint32_t pdu_left;   /* bytes of the PDU after the current PDV */
    uint32_t max_pdu;    /* the largest P-DATA-TF length the session decodes */
    uint8_t ctx;         /* the data set's presentation context */
    uint8_t last;        /* the current PDV is the data set's last fragment */
    uint64_t hdr_bytes;  /* PDU and PDV header bytes crossed, since the last report */
    uint64_t pdus;       /* PDUs begun, since the last report */
    uint64_t pdu_bytes;  /* their length with their headers */
    uint64_t pdvs;       /* PDVs begun, since the last report */
} Entry;

static PyObject *str_getts, *str_getlen; /* pcapy Pkthdr's methods, interned once */

typedef struct {
    PyObject_HEAD
    FILE *fp;
    int swapped;
    int nsec;
    uint32_t snaplen;
    unsigned char *buf;
    size_t bufsize;
    PyObject *services; /* set of bytes: address + port */
    PyObject *flows;    /* set of keys */
    PyObject *entries;  /* dict: key -> capsule(Entry) */
    int eof;
    int live;           /* no file: packets come to pump(); nothing is dropped here */
    PyObject *error;    /* str or None: why reading stopped early */
    unsigned long long packets;  /* records read */
} Scanner;

static uint32_t rd32(const unsigned char *p, int swapped) {
    uint32_t v;
    memcpy(&v, p, 4);
    return swapped ? __builtin_bswap32(v) : v;
}

static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static void entry_free(PyObject *capsule) {
    Entry *e = PyCapsule_GetPointer(capsule, "fastpath.entry");
    if (e) PyMem_Free(e->ring);
    PyMem_Free(e);
}

/* Append absorbed bytes to the ring, pushing the oldest out (counted) when it is full. */
static int ring_put(Entry *e, const unsigned char *p, uint32_t n) {
    if (!e->cap || !n) return 0;
    if (!e->ring) {
        e->ring = PyMem_Malloc(e->cap);
        if (!e->ring) {
            PyErr_NoMemory();
            return -1;
        }
    }
    uint64_t total = (uint64_t)e->pre + e->kept + n;
    if (total > e->cap) {
        uint64_t over = total - e->cap;
        uint32_t x = over < e->pre ? (uint32_t)over : e->pre; /* Python's oldest first */
        e->pre -= x;
        e->pre_dropped += x;
        e->dropped += x;
        over -= x;
        if (over >= e->kept) { /* the ring empties, and the head of p goes too */
            uint32_t cut = (uint32_t)(over - e->kept);
            e->dropped += over;
            p += cut;
            n -= cut;
            e->kept = 0;
            e->head = 0;
        } else {
            e->head = (e->head + (uint32_t)over) % e->cap;
            e->kept -= (uint32_t)over;
            e->dropped += over;
        }
    }
    if (!n) return 0;
    uint32_t pos = (e->head + e->kept) % e->cap;
    uint32_t first = n < e->cap - pos ? n : e->cap - pos;
    memcpy(e->ring + pos, p, first);
    memcpy(e->ring, p + first, n - first);
    e->kept += n;
    return 0;
}

/* The later of an ACK and the latest one seen (-1: none), in sequence order: Python's
 * release() ignores an ACK below one it already took (an old ACK that arrives late), so a
 * report carries the highest, not the last. */
static int64_t later_ack(int64_t seen, uint32_t ack) {
    return seen < 0 || (int32_t)(ack - (uint32_t)seen) > 0 ? (int64_t)ack : seen;
}

/* The peer acknowledged up to ack: let the kept bytes below it go. */
static void ring_release(Entry *e, uint32_t ack) {
    e->ack_data = later_ack(e->ack_data, ack);
    ack = (uint32_t)e->ack_data;
    if (e->pre) {
        int32_t above = (int32_t)(e->start_seq - ack); /* bytes of pre not acknowledged */
        if (above < (int32_t)e->pre) e->pre = above > 0 ? (uint32_t)above : 0;
    }
    if (!e->kept) return;
    int32_t d = (int32_t)(ack - (e->next_seq - e->kept));
    if (d <= 0) return;
    uint32_t k = (uint32_t)d < e->kept ? (uint32_t)d : e->kept;
    e->head = (e->head + k) % e->cap;
    e->kept -= k;
}

/* The kept bytes, oldest first. */
static PyObject *ring_bytes(Entry *e) {
    PyObject *b = PyBytes_FromStringAndSize(NULL, e->kept);
    if (!b || !e->kept) return b;
    char *out = PyBytes_AS_STRING(b);
    uint32_t first = e->kept < e->cap - e->head ? e->kept : e->cap - e->head;
    memcpy(out, e->ring + e->head, first);
    memcpy(out + first, e->ring, e->kept - first);
    return b;
}

static void Scanner_dealloc(Scanner *self) {
    if (self->fp) fclose(self->fp);
    PyMem_Free(self->buf);
    Py_XDECREF(self->services);
    Py_XDECREF(self->flows);
    Py_XDECREF(self->entries);
    Py_XDECREF(self->error);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Scanner_init(Scanner *self, PyObject *args, PyObject *kwds) {
    const char *path;
    PyObject *services, *flows;
    static char *kwlist[] = {"path", "services", "flows", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "zOO", kwlist, &path, &services, &flows))
        return -1;
    self->entries = PyDict_New();
    if (!self->entries) return -1;
    Py_INCREF(Py_None);
    self->error = Py_None;
    if (!path) {
        /* Live: packets come to pump() one by one; the kernel's filter chose them. */
        self->live = 1;
        return 0;
    }
    if (!PyAnySet_Check(services) || !PyAnySet_Check(flows)) {
        PyErr_SetString(PyExc_TypeError, "services and flows must be sets of bytes");
        return -1;
    }
    self->fp = fopen(path, "rb");
    if (!self->fp) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
        return -1;
    }
    /* stdio's default 4 KiB buffer costs a read() per 4 KiB: about 0.1 s per 450 MB. */
    setvbuf(self->fp, NULL, _IOFBF, 1 << 20);
    unsigned char head[24];
    if (fread(head, 1, 24, self->fp) != 24) {
        PyErr_SetString(PyExc_ValueError, "not a classic pcap file (short header)");
        return -1;
    }
    uint32_t magic;
    memcpy(&magic, head, 4);
    if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) self->swapped = 0;
    else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1) self->swapped = 1;
    else {
        PyErr_SetString(PyExc_ValueError, "not a classic pcap file");
        return -1;
    }
    self->nsec = (magic == 0xa1b23c4d || magic == 0x4d3cb2a1);
    self->snaplen = rd32(head + 16, self->swapped);
    if ((rd32(head + 20, self->swapped) & 0x0fffffff) != 1) {
        PyErr_SetString(PyExc_ValueError, "not an Ethernet capture");
        return -1;
    }
    self->bufsize = 65536;
    self->buf = PyMem_Malloc(self->bufsize);
    if (!self->buf) {
        PyErr_NoMemory();
        return -1;
    }
    Py_INCREF(services);
    self->services = services;
    Py_INCREF(flows);
    self->flows = flows;
    return 0;
}

/* A report: (key, bytes, data packets, ack packets, last ts, kept bytes or None (only when
 * final: the entry is let go), bytes pushed out unacknowledged, of them the bytes of pre,
 * highest ACK of the data, highest ACK the data direction sent (-1: none seen), framing),
 * framing being
 * (header bytes, PDUs and their bytes, PDVs crossed, then the PDU bytes after the current
 * PDV, the bytes left of it, whether it is the last fragment); counters reset. */
static PyObject *report(PyObject *key, Entry *e, int final) {
    PyObject *kept = final ? ring_bytes(e) : (Py_INCREF(Py_None), Py_None);
    if (!kept) return NULL;
    PyObject *r = Py_BuildValue("(OKKKdNKKLL(KKKKkkk))", key, (unsigned long long)e->bytes,
                                (unsigned long long)e->data_packets,
                                (unsigned long long)e->ack_packets, e->last_ts, kept,
                                (unsigned long long)e->dropped,
                                (unsigned long long)e->pre_dropped, (long long)e->ack_data,
                                (long long)e->ack_other, (unsigned long long)e->hdr_bytes,
                                (unsigned long long)e->pdus, (unsigned long long)e->pdu_bytes,
                                (unsigned long long)e->pdvs, (unsigned long)e->pdu_left,
                                (unsigned long)(e->end - e->next_seq), (unsigned long)e->last);
    e->bytes = e->data_packets = e->ack_packets = e->dropped = e->pre_dropped = 0;
    e->hdr_bytes = e->pdus = e->pdu_bytes = e->pdvs = 0;
    return r;
}

/* Why reading stopped: -1, or -2 (an exception set) if even the message cannot be made. */
static int set_error(Scanner *self, const char *why) {
    PyObject *text = PyUnicode_FromString(why);
    if (!text) return -2;
    Py_SETREF(self->error, text);
    return -1;
}

/* Read one record into buf; 1 read, 0 end of file, -1 error (self->error set). */
static int read_record(Scanner *self, double *ts, uint32_t *caplen, uint32_t *wire) {
    unsigned char rh[16];
    size_t got = fread(rh, 1, 16, self->fp);
    if (got == 0) return 0;
    if (got != 16) goto cut;
    uint32_t sec = rd32(rh, self->swapped), frac = rd32(rh + 4, self->swapped);
    *caplen = rd32(rh + 8, self->swapped);
    *wire = rd32(rh + 12, self->swapped);
    if (*caplen > 262144 * 4) {
        return set_error(self, "record longer than any snaplen");
    }
    if (*caplen > self->bufsize) {
        unsigned char *nb = PyMem_Realloc(self->buf, *caplen);
        if (!nb) {
            PyErr_NoMemory();
            return -2;
        }
        self->buf = nb;
        self->bufsize = *caplen;
    }
    if (fread(self->buf, 1, *caplen, self->fp) != *caplen) goto cut;
    *ts = (double)sec + (self->nsec ? frac * 1e-9 : frac * 1e-6);
    self->packets++;
    return 1;
cut:
    return set_error(self, "truncated dump file; cut mid-packet");
}

/*
 * Parse Ethernet (802.1Q/QinQ), IPv4 or IPv6 without extension headers, TCP.
 * Returns 1 with the fields set, 0 for a frame Python must see (odd or cut),
 * -1 for a frame that is not TCP over IP (dropped, as the BPF pass drops it).
 */
typedef struct {
    const unsigned char *src, *dst;
    int alen;
    uint16_t sport, dport, vlan;
    uint32_t seq;
    uint32_t ack;
    uint8_t flags;
    uint32_t plen;
    const unsigned char *payload;
} Tcp;

static int parse(const unsigned char *p, uint32_t caplen, uint32_t wire, Tcp *t) {
    uint32_t off = 12;
    t->vlan = NO_VLAN;
    if (caplen < 14) return 0;
    uint16_t type = be16(p + off);
    while (type == 0x8100 || type == 0x88a8 || type == 0x9100) {
        if (caplen < off + 6) return 0;
        if (t->vlan == NO_VLAN) t->vlan = be16(p + off + 2) & 0x0fff;
        off += 4;
        type = be16(p + off);
    }
    off += 2;
    uint32_t l4, end;
    if (type == 0x0800) {
        if (caplen < off + 20) return 0;
        const unsigned char *ip = p + off;
        uint32_t ihl = (ip[0] & 0x0f) * 4, total = be16(ip + 2);
        if ((ip[0] >> 4) != 4 || ihl < 20) return 0;
        if (ip[9] != 6) return -1;
        if (be16(ip + 6) & 0x3fff) return 0; /* a fragment: Python counts it */
        if (total < ihl + 20 || off + total > caplen) return 0;
        t->src = ip + 12;
        t->dst = ip + 16;
        t->alen = 4;
        l4 = off + ihl;
        end = off + total;
    } else if (type == 0x86dd) {
        if (caplen < off + 40) return 0;
        const unsigned char *ip = p + off;
        if (ip[6] != 6) return ip[6] == 17 || ip[6] == 58 ? -1 : 0;
        uint32_t plen = be16(ip + 4);
        if (off + 40 + plen > caplen || plen < 20) return 0;
        t->src = ip + 8;
        t->dst = ip + 24;
        t->alen = 16;
        l4 = off + 40;
        end = l4 + plen;
    } else {
        return -1;
    }
    const unsigned char *tcp = p + l4;
    uint32_t doff = (tcp[12] >> 4) * 4;
    if (doff < 20 || l4 + doff > end) return 0;
    t->sport = be16(tcp);
    t->dport = be16(tcp + 2);
    t->seq = be32(tcp + 4);
    t->ack = be32(tcp + 8);
    t->flags = tcp[13];
    t->plen = end - l4 - doff;
    t->payload = tcp + doff;
    (void)wire;
    return 1;
}

/* key = lower endpoint, higher endpoint, vlan; *dir = 0 when the source is the lower. */
static Py_ssize_t make_key(const Tcp *t, unsigned char *key, int *dir) {
    unsigned char a[18], b[18];
    int n = t->alen + 2;
    memcpy(a, t->src, t->alen);
    a[t->alen] = t->sport >> 8;
    a[t->alen + 1] = t->sport & 0xff;
    memcpy(b, t->dst, t->alen);
    b[t->alen] = t->dport >> 8;
    b[t->alen + 1] = t->dport & 0xff;
    *dir = memcmp(a, b, n) > 0;
    memcpy(key, *dir ? b : a, n);
    memcpy(key + n, *dir ? a : b, n);
    key[2 * n] = t->vlan >> 8;
    key[2 * n + 1] = t->vlan & 0xff;
    return 2 * n + 2;
}

static int covered(Scanner *self, const Tcp *t, PyObject *key) {
    unsigned char ep[18];
    int n = t->alen + 2;
    int found = PySet_Contains(self->flows, key);
    if (found) return found;
    for (int side = 0; side < 2; side++) {
        const unsigned char *ip = side ? t->src : t->dst;
        uint16_t port = side ? t->sport : t->dport;
        memcpy(ep, ip, t->alen);
        ep[t->alen] = port >> 8;
        ep[t->alen + 1] = port & 0xff;
        PyObject *k = PyBytes_FromStringAndSize((const char *)ep, n);
        if (!k) return -1;
        found = PySet_Contains(self->services, k);
        Py_DECREF(k);
        if (found) return found;
    }
    return 0;
}

/* Reports of every entry that absorbed something since it was last reported. */
static PyObject *progress(Scanner *self) {
    PyObject *reports = PyList_New(0);
    if (!reports) return NULL;
    PyObject *key, *cap;
    Py_ssize_t pos = 0;
    while (PyDict_Next(self->entries, &pos, &key, &cap)) {
        Entry *e = PyCapsule_GetPointer(cap, "fastpath.entry");
        if (e->bytes || e->ack_packets) {
            PyObject *rep = report(key, e, 0);
            if (!rep || PyList_Append(reports, rep) < 0) {
                Py_XDECREF(rep);
                Py_DECREF(reports);
                return NULL;
            }
            Py_DECREF(rep);
        }
    }
    return reports;
}

/*
 * A data segment at next_seq runs room bytes into the current PDV and on past its end:
 * walk the P-DATA headers it holds. The segment is absorbed (1, the entry moved on) only if
 * everything after the PDV's end is more of the same data set: P-DATA-TF PDUs (reserved
 * byte zero, length at most max_pdu) and PDVs on the same context with no reserved control
 * bit, not a command, with a value, headers whole inside this segment, nothing after the
 * last fragment. Anything else (0, nothing changed) is Python's, which flags what it must.
 */
static int cross(Entry *e, const unsigned char *p, uint32_t plen, uint32_t room) {
    if (!e->framed || e->last) return 0;
    uint32_t off = room, pdu_left = e->pdu_left;
    uint64_t hdr = 0, pdus = 0, pdu_bytes = 0, pdvs = 0;
    for (;;) {
        if (pdu_left == 0) {
            if (plen - off < 12) return 0;
            const unsigned char *h = p + off;
            uint32_t len = be32(h + 2);
            if (h[0] != 0x04 || h[1] != 0 || len < 6 || len > e->max_pdu) return 0;
            pdu_left = len;
            pdus++;
            pdu_bytes += 6 + (uint64_t)len;
            hdr += 6;
            off += 6;
        } else if (pdu_left < 6 || plen - off < 6) {
            return 0;
        }
        const unsigned char *v = p + off;
        uint32_t vlen = be32(v);
        uint8_t control = v[5];
        if (vlen <= 2 || vlen > pdu_left - 4 || v[4] != e->ctx || (control & ~2u)) return 0;
        pdu_left -= 4 + vlen;
        pdvs++;
        hdr += 6;
        off += 6;
        uint32_t data = vlen - 2;
        if (plen - off <= data) {
            e->end = e->next_seq + off + data;
            e->pdu_left = pdu_left;
            e->last = (control & 2) != 0;
            e->hdr_bytes += hdr;
            e->pdus += pdus;
            e->pdu_bytes += pdu_bytes;
            e->pdvs += pdvs;
            return 1;
        }
        if (control & 2) return 0; /* bytes after the data set's last fragment */
        off += data;
    }
}

/*
 * One packet: absorbed by its flow's entry, dropped (nothing followed, offline only), or for
 * Python. Returns 1 when Python must see it, with *rep a new reference (the entry's final
 * report when Python takes the flow over, else None); 0 when absorbed or dropped; -1 on error.
 */
static int scan_one(Scanner *self, double ts, const unsigned char *buf, uint32_t caplen,
                    uint32_t wire, PyObject **rep) {
    Tcp t;
    int parsed = parse(buf, caplen, wire, &t);
    if (parsed < 0 && !self->live) return 0;
    *rep = Py_None;
    Py_INCREF(Py_None);
    if (parsed != 1) return 1;
    unsigned char kb[MAX_KEY];
    int dir;
    Py_ssize_t klen = make_key(&t, kb, &dir);
    PyObject *key = PyBytes_FromStringAndSize((const char *)kb, klen);
    if (!key) goto fail;
    PyObject *cap = PyDict_GetItemWithError(self->entries, key);
    if (cap) {
        Entry *e = PyCapsule_GetPointer(cap, "fastpath.entry");
        int clean = !(t.flags & (TH_SYN | TH_FIN | TH_RST)) && caplen == wire;
        if (e->need_ack && dir != e->data_dir && (t.flags & TH_ACK)) clean = 0;
        if (clean && t.plen == 0) {
            if (t.flags & TH_ACK) {
                if (dir == e->data_dir) e->ack_other = later_ack(e->ack_other, t.ack);
                else ring_release(e, t.ack);
            }
            e->ack_packets++;
            e->last_ts = ts;
            Py_DECREF(key);
            Py_DECREF(*rep);
            return 0;
        }
        uint32_t room = e->end - e->next_seq;
        if (clean && dir == e->data_dir && t.seq == e->next_seq &&
            (t.plen <= room || cross(e, t.payload, t.plen, room))) {
            if (ring_put(e, t.payload, t.plen) < 0) {
                Py_DECREF(key);
                goto fail;
            }
            if (t.flags & TH_ACK) e->ack_other = later_ack(e->ack_other, t.ack);
            e->next_seq += t.plen;
            e->bytes += t.plen;
            e->data_packets++;
            e->last_ts = ts;
            Py_DECREF(key);
            Py_DECREF(*rep);
            return 0;
        }
        /* Python takes over this flow: hand it what the entry absorbed. */
        Py_DECREF(*rep);
        *rep = report(key, e, 1);
        if (!*rep || PyDict_DelItem(self->entries, key) < 0) {
            Py_DECREF(key);
            goto fail;
        }
    } else if (PyErr_Occurred()) {
        Py_DECREF(key);
        goto fail;
    } else if (!self->live) {
        int c = covered(self, &t, key);
        if (c <= 0) {
            Py_DECREF(key);
            Py_DECREF(*rep);
            *rep = NULL;
            return c;
        }
    }
    Py_DECREF(key);
    return 1;
fail:
    Py_XDECREF(*rep);
    *rep = NULL;
    return -1;
}

/*
 * batch(max_items, max_packets) -> (items, reports, done)
 * items: (ts, frame, wire length, report or None) for Python, in capture order;
 * reports: what the remaining entries absorbed since they were last reported, given when
 * max_packets were read or at the end. Python registers entries while it handles an item,
 * so it asks for one item at a time: packets read ahead would miss those entries.
 */
static PyObject *Scanner_batch(Scanner *self, PyObject *args) {
    Py_ssize_t max_items, max_packets;
    if (!PyArg_ParseTuple(args, "nn", &max_items, &max_packets)) return NULL;
    if (!self->fp) {
        PyErr_SetString(PyExc_ValueError, "batch() reads a file: this scanner is live");
        return NULL;
    }
    PyObject *items = PyList_New(0);
    if (!items) return NULL;
    Py_ssize_t read = 0;
    while (!self->eof && PyList_GET_SIZE(items) < max_items && read < max_packets) {
        double ts;
        uint32_t caplen, wire;
        int r = read_record(self, &ts, &caplen, &wire);
        if (r == -2) goto fail;
        if (r <= 0) {
            self->eof = 1;
            break;
        }
        read++;
        PyObject *rep;
        int s = scan_one(self, ts, self->buf, caplen, wire, &rep);
        if (s < 0) goto fail;
        if (!s) continue;
        PyObject *frame = PyBytes_FromStringAndSize((const char *)self->buf, caplen);
        if (!frame) {
            Py_DECREF(rep);
            goto fail;
        }
        PyObject *item = Py_BuildValue("(dNIN)", ts, frame, wire, rep);
        if (!item || PyList_Append(items, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    /* Progress of the entries still absorbing: only every max_packets and at the end, so a
     * flow's sums stay large; a flow's own next Python packet carries its sum anyway. */
    int due = self->eof || read >= max_packets;
    PyObject *reports = due ? progress(self) : PyList_New(0);
    if (!reports) goto fail;
    return Py_BuildValue("(NNO)", items, reports, self->eof ? Py_True : Py_False);
fail:
    Py_DECREF(items);
    return NULL;
}

/*
 * pump(next, max_packets) -> (item or None, packets read)
 * Live: take packets from ``next`` (pcapy's Reader.next: (header or None, bytes)) until one
 * is for Python, nothing is waiting, or max_packets were taken; absorbed ones never become
 * Python objects of ours. The item is (ts, frame, wire length, report or None) as in batch.
 */
static PyObject *Scanner_pump(Scanner *self, PyObject *args) {
    PyObject *next;
    Py_ssize_t max_packets;
    if (!PyArg_ParseTuple(args, "On", &next, &max_packets)) return NULL;
    Py_ssize_t read = 0;
    while (read < max_packets) {
        PyObject *got = PyObject_CallNoArgs(next);
        if (!got) return NULL;
        if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 2) {
            Py_DECREF(got);
            PyErr_SetString(PyExc_TypeError, "next() must give (header, data)");
            return NULL;
        }
        PyObject *hdr = PyTuple_GET_ITEM(got, 0), *data = PyTuple_GET_ITEM(got, 1);
        if (hdr == Py_None) {
            Py_DECREF(got);
            break;
        }
        if (!PyBytes_Check(data)) {
            Py_DECREF(got);
            PyErr_SetString(PyExc_TypeError, "next() must give bytes");
            return NULL;
        }
        PyObject *tsv = PyObject_CallMethodNoArgs(hdr, str_getts);
        PyObject *lenv = tsv ? PyObject_CallMethodNoArgs(hdr, str_getlen) : NULL;
        long long sec = 0, usec = 0;
        unsigned long wire = 0;
        if (lenv && PyArg_ParseTuple(tsv, "LL", &sec, &usec)) wire = PyLong_AsUnsignedLong(lenv);
        Py_XDECREF(tsv);
        Py_XDECREF(lenv);
        if (PyErr_Occurred()) {
            Py_DECREF(got);
            return NULL;
        }
        read++;
        self->packets++;
        double ts = (double)sec + usec * 1e-6;
        Py_ssize_t caplen = PyBytes_GET_SIZE(data);
        PyObject *rep;
        int s = scan_one(self, ts, (const unsigned char *)PyBytes_AS_STRING(data),
                         (uint32_t)caplen, (uint32_t)wire, &rep);
        if (s < 0) {
            Py_DECREF(got);
            return NULL;
        }
        if (s) {
            PyObject *out = Py_BuildValue("((dOkN)n)", ts, data, wire, rep, read);
            Py_DECREF(got);
            return out;
        }
        Py_DECREF(got);
    }
    return Py_BuildValue("(On)", Py_None, read);
}

/* progress() -> reports of the entries that absorbed anything since last reported. */
static PyObject *Scanner_progress(Scanner *self, PyObject *Py_UNUSED(ignored)) {
    return progress(self);
}

/* register(key, data_dir, next_seq, end, keep, pre[, pdu_left, ctx, max_pdu, need_ack]):
 * absorb this flow's next in-window segments, keeping up to keep absorbed bytes until they
 * are acknowledged, the pre bytes Python keeps before next_seq included. With pdu_left >= 0
 * (the PDU bytes after the data-set PDV that ends at end), the window may move on across the
 * PDV and PDU headers of the same data set on context ctx (cross()). With need_ack, the
 * peer's first ACK ends the entry (Python had seen none: keep is 0 until one comes). */
static PyObject *Scanner_register(Scanner *self, PyObject *args) {
    PyObject *key;
    int data_dir;
    unsigned long next_seq, end, keep, pre;
    long long pdu_left = -1;
    int ctx = 0;
    unsigned long max_pdu = 0;
    int need_ack = 0;
    if (!PyArg_ParseTuple(args, "Sikkkk|Likp", &key, &data_dir, &next_seq, &end, &keep, &pre,
                          &pdu_left, &ctx, &max_pdu, &need_ack))
        return NULL;
    if (pdu_left > 0xffffffffLL || ctx < 0 || ctx > 255) {
        PyErr_SetString(PyExc_ValueError, "pdu_left must fit 32 bits, ctx 8");
        return NULL;
    }
    if (keep > (1UL << 30) || pre > keep) {
        PyErr_SetString(PyExc_ValueError, "keep must be at most 1 GiB, pre at most keep");
        return NULL;
    }
    Entry *e = PyMem_Calloc(1, sizeof(Entry));
    if (!e) return PyErr_NoMemory();
    e->data_dir = data_dir ? 1 : 0;
    e->next_seq = (uint32_t)next_seq;
    e->end = (uint32_t)end;
    e->cap = (uint32_t)keep;
    e->start_seq = (uint32_t)next_seq;
    e->pre = (uint32_t)pre;
    e->ack_data = e->ack_other = -1;
    e->need_ack = need_ack;
    if (pdu_left >= 0) {
        e->framed = 1;
        e->pdu_left = (uint32_t)pdu_left;
        e->ctx = (uint8_t)ctx;
        e->max_pdu = (uint32_t)max_pdu;
    }
    PyObject *cap = PyCapsule_New(e, "fastpath.entry", entry_free);
    if (!cap) {
        PyMem_Free(e);
        return NULL;
    }
    int rc = PyDict_SetItem(self->entries, key, cap);
    Py_DECREF(cap);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* unregister(key) -> the entry's last report, or None if it had none. */
static PyObject *Scanner_unregister(Scanner *self, PyObject *args) {
    PyObject *key;
    if (!PyArg_ParseTuple(args, "S", &key)) return NULL;
    PyObject *cap = PyDict_GetItemWithError(self->entries, key);
    if (!cap) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    Entry *e = PyCapsule_GetPointer(cap, "fastpath.entry");
    PyObject *rep = (e->bytes || e->ack_packets || e->kept || e->dropped || e->ack_data >= 0)
                        ? report(key, e, 1)
                        : (Py_INCREF(Py_None), Py_None);
    if (!rep) return NULL;
    if (PyDict_DelItem(self->entries, key) < 0) {
        Py_DECREF(rep);
        return NULL;
    }
    return rep;
}

static PyObject *Scanner_tell(Scanner *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromLongLong(self->fp ? (long long)ftell(self->fp) : 0);
}

static PyObject *Scanner_get_error(Scanner *self, void *Py_UNUSED(c)) {
    Py_INCREF(self->error);
    return self->error;
}

static PyObject *Scanner_get_packets(Scanner *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(self->packets);
}

static PyObject *Scanner_get_entries(Scanner *self, void *Py_UNUSED(c)) {
    return PyLong_FromSsize_t(PyDict_Size(self->entries));
}

static PyMethodDef Scanner_methods[] = {
    {"batch", (PyCFunction)Scanner_batch, METH_VARARGS,
     "batch(max_items, max_packets) -> (items, reports, done)"},
    {"register", (PyCFunction)Scanner_register, METH_VARARGS,
     "register(key, data_dir, next_seq, end, keep, pre[, pdu_left, ctx, max_pdu, need_ack]): "
     "absorb the flow's in-window segments (framed: across the data set's PDV and PDU "
     "headers; need_ack: the peer's first ACK goes to Python)"},
    {"unregister", (PyCFunction)Scanner_unregister, METH_VARARGS,
     "unregister(key) -> the entry's last report or None"},
    {"pump", (PyCFunction)Scanner_pump, METH_VARARGS,
     "pump(next, max_packets) -> (item or None, packets read): live packets from next()"},
    {"progress", (PyCFunction)Scanner_progress, METH_NOARGS,
     "progress() -> reports of the entries that absorbed anything since last reported"},
    {"tell", (PyCFunction)Scanner_tell, METH_NOARGS, "byte offset in the file"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Scanner_getset[] = {
    {"error", (getter)Scanner_get_error, NULL, "why reading stopped early, or None", NULL},
    {"packets", (getter)Scanner_get_packets, NULL, "records read", NULL},
    {"entries", (getter)Scanner_get_entries, NULL, "flows with a skip entry", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sensor.capture.fastpath.Scanner",
    .tp_doc = "The second pass over a classic pcap file of Ethernet frames, or live packets, in C.",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
    .tp_getset = Scanner_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fastpath",
    "The compiled second-pass packet loop (see sensor/capture/fastpath.c).", -1, NULL,
};

PyMODINIT_FUNC PyInit_fastpath(void) {
    if (PyType_Ready(&ScannerType) < 0) return NULL;
    str_getts = PyUnicode_InternFromString("getts");
    str_getlen = PyUnicode_InternFromString("getlen");
    if (!str_getts || !str_getlen) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
