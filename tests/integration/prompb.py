"""Prometheus remote write / read bodies in pure Python (standard library
only: the protobuf module may be absent), for the remote-write tests and
tests/bench/remote_write_bench.py.

Protobuf is encoded and decoded by hand with prompb's field numbers
(proto/prompb.proto); snappy's block format goes through libsnappy's C API
(libsnappy.so.1, Debian's libsnappy1v5) with ctypes.
"""

import ctypes
import ctypes.util
import struct

STALE_NAN_BITS = 0x7FF0000000000002

_lib = None


def _snappy():
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("snappy") or "libsnappy.so.1"
        lib = ctypes.CDLL(name)
        lib.snappy_max_compressed_length.restype = ctypes.c_size_t
        lib.snappy_max_compressed_length.argtypes = [ctypes.c_size_t]
        for f in (lib.snappy_compress, lib.snappy_uncompress):
            f.restype = ctypes.c_int
            f.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                          ctypes.POINTER(ctypes.c_size_t)]
        lib.snappy_uncompressed_length.restype = ctypes.c_int
        lib.snappy_uncompressed_length.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                                   ctypes.POINTER(ctypes.c_size_t)]
        _lib = lib
    return _lib


def snappy_compress(data):
    lib = _snappy()
    cap = lib.snappy_max_compressed_length(len(data))
    out = ctypes.create_string_buffer(cap)
    n = ctypes.c_size_t(cap)
    if lib.snappy_compress(data, len(data), out, ctypes.byref(n)) != 0:
        raise ValueError("snappy_compress failed")
    return out.raw[:n.value]


def snappy_uncompress(data):
    lib = _snappy()
    n = ctypes.c_size_t(0)
    if lib.snappy_uncompressed_length(data, len(data), ctypes.byref(n)) != 0:
        raise ValueError("not a snappy block")
    out = ctypes.create_string_buffer(max(n.value, 1))
    if lib.snappy_uncompress(data, len(data), out, ctypes.byref(n)) != 0:
        raise ValueError("corrupt snappy block")
    return out.raw[:n.value]


# ---- protobuf --------------------------------------------------------------

def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field_len(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def _bytes(s):
    return s.encode() if isinstance(s, str) else s


def label(name, value):
    """name, value: str, or bytes sent as they are (e.g. invalid UTF-8)."""
    return field_len(1, field_len(1, _bytes(name)) + field_len(2, _bytes(value)))


def sample(value=None, ts=0, bits=None):
    """A TimeSeries.samples field; bits: the value's raw 64 bits."""
    raw = struct.pack("<Q", bits) if bits is not None else struct.pack("<d", value)
    return field_len(2, b"\x09" + raw + varint(2 << 3) + varint(ts))


def timeseries(labels, samples):
    """labels: dict or list of (name, value) (sent in that order); samples:
    list of (ts_ms, value) or (ts_ms, None, bits)."""
    items = labels.items() if isinstance(labels, dict) else labels
    body = b"".join(label(k, v) for k, v in items)
    for s in samples:
        body += sample(s[1], s[0], s[2] if len(s) > 2 else None)
    return field_len(1, body)


def write_request(series, metadata=0):
    """series: list of (labels, samples). Returns the protobuf bytes."""
    out = b"".join(timeseries(l, s) for l, s in series)
    for _ in range(metadata):
        out += field_len(3, varint(1 << 3) + varint(1) + field_len(2, b"m"))
    return out


def write_body(series, metadata=0):
    return snappy_compress(write_request(series, metadata))


def read_request(queries):
    """queries: list of (start_ms, end_ms, [(type, name, value)]), type 0..3
    (EQ, NEQ, RE, NRE)."""
    out = b""
    for start, end, matchers in queries:
        q = varint(1 << 3) + varint(start) + varint(2 << 3) + varint(end)
        for t, n, v in matchers:
            q += field_len(3, varint(1 << 3) + varint(t) + field_len(2, n.encode()) +
                           field_len(3, v.encode()))
        out += field_len(1, q)
    return snappy_compress(out)


def _fields(buf):
    i, n = 0, len(buf)
    while i < n:
        key, i = _uvarint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _uvarint(buf, i)
        elif wt == 1:
            v = buf[i:i + 8]
            i += 8
        elif wt == 5:
            v = buf[i:i + 4]
            i += 4
        elif wt == 2:
            ln, i = _uvarint(buf, i)
            v = buf[i:i + ln]
            i += ln
        else:
            raise ValueError("wire type %d" % wt)
        yield num, wt, v


def _uvarint(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, i


def parse_read_response(body):
    """A snappy ReadResponse -> list (per query) of list of
    (labels dict, [(ts_ms, value bits)])."""
    out = []
    for num, _, qr in _fields(snappy_uncompress(body)):
        if num != 1:
            continue
        series = []
        for n2, _, ts in _fields(qr):
            if n2 != 1:
                continue
            labels, samples = {}, []
            for n3, _, v in _fields(ts):
                if n3 == 1:
                    d = {k: val for k, _, val in _fields(v)}
                    labels[d.get(1, b"").decode()] = d.get(2, b"").decode()
                elif n3 == 2:
                    bits, t = 0, 0
                    for n4, _, x in _fields(v):
                        if n4 == 1:
                            bits = struct.unpack("<Q", x)[0]
                        elif n4 == 2:
                            t = x - (1 << 64) if x >= 1 << 63 else x
                    samples.append((t, bits))
            series.append((labels, samples))
        out.append(series)
    return out


def bits_to_float(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]
