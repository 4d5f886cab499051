"""A proto2 codec for the messages of runh/criu/rpc.proto, read from that file.

Why not google.protobuf: it would be a runtime dependency of runh (and of every install)
for the few small messages that checkpoint and restore exchange with `criu swrk`; the
wire format they need is two encodings (varint, length-delimited), which is this file.
The schema is the .proto itself, parsed once per call of checkpoint/restore (about
0.3 ms), so the field numbers live in one place. tests/test_criu.py holds this codec to
google.protobuf's encoding of the same file.

A message is a dict {field name: value}; repeated fields are lists; sub-messages are
dicts. Unknown fields of a received message are skipped.
"""

import posix

_SCALARS = {"int32", "uint32", "int64", "uint64", "bool", "string", "bytes"}
_schema = None


def schema():
    """{message: {field: (number, type, repeated)}} from rpc.proto (cached)."""
    global _schema
    if _schema is None:
        path = __file__.rsplit("/", 1)[0] + "/rpc.proto"
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            text = b""
            while True:
                chunk = posix.read(fd, 65536)
                if not chunk:
                    break
                text += chunk
        finally:
            posix.close(fd)
        _schema = parse(text.decode())
    return _schema


def parse(text):
    """Messages and their fields from proto2 text (the subset rpc.proto uses: flat
    messages, `label type name = number;` fields, // comments)."""
    out, cur = {}, None
    for line in text.splitlines():
        line = line.split("//", 1)[0].strip()
        if not line:
            continue
        words = line.replace("=", " = ").replace(";", " ").split()
        if words[0] == "message":
            cur = out.setdefault(words[1], {})
        elif words[0] == "}":
            cur = None
        elif cur is not None and words[0] in ("optional", "required", "repeated"):
            # label type name = number [options]
            cur[words[2]] = (int(words[4]), words[1], words[0] == "repeated")
    return out


def _varint(n):
    if n < 0:
        n += 1 << 64  # int32/int64 negatives: ten bytes, two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode(name, msg):
    """The wire bytes of message `name` (a dict)."""
    fields = schema()[name]
    out = []
    # Field-number order, as protobuf's own encoders write.
    for key in sorted(msg, key=lambda k: fields[k][0]):
        value = msg[key]
        if value is None:
            continue
        number, kind, repeated = fields[key]
        for v in (value if repeated else (value,)):
            if kind not in _SCALARS:
                data = encode(kind, v)
            elif kind in ("string", "bytes"):
                data = v.encode() if isinstance(v, str) else bytes(v)
            else:
                out.append(_varint(number << 3) + _varint(int(v)))
                continue
            out.append(_varint(number << 3 | 2) + _varint(len(data)) + data)
    return b"".join(out)


def _read_varint(data, i):
    n = shift = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i
        if shift > 63:
            raise ValueError("varint too long")


def decode(name, data):
    """Message `name` from wire bytes, as a dict."""
    fields = {num: (field, kind, rep) for field, (num, kind, rep) in schema()[name].items()}
    out = {}
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            raw, i = _read_varint(data, i)
        elif wire == 2:
            size, i = _read_varint(data, i)
            raw, i = data[i:i + size], i + size
            if i > len(data):
                raise ValueError("truncated field")
        elif wire == 1:
            raw, i = data[i:i + 8], i + 8
        elif wire == 5:
            raw, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        spec = fields.get(number)
        if spec is None:
            continue
        field, kind, repeated = spec
        if kind == "string":
            v = bytes(raw).decode(errors="replace")
        elif kind == "bytes":
            v = bytes(raw)
        elif kind == "bool":
            v = bool(raw)
        elif kind in ("int32", "int64"):
            v = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif kind in _SCALARS:
            v = raw
        else:
            v = decode(kind, raw)
        if repeated:
            out.setdefault(field, []).append(v)
        else:
            out[field] = v
    return out
