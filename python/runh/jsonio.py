"""JSON without `import json`.

`import json` pulls in `re` (json.decoder compiles regexes at import): 5.3 ms cold here, which is
as much as the whole interpreter start. The C accelerator `_json` alone costs 0.2 ms and holds
everything needed: the scanner (a parser, given a context object) and the string encoders.
Output formats follow Go's encoding/json as runc uses it (MarshalIndent for state, compact lists).
"""

import _json

# Go escapes nothing but control characters, quotes and backslash (plus <>& which callers
# never depend on), so non-ASCII is written as-is.
_enc_str = _json.encode_basestring


def _constant(name):
    # NaN / Infinity are not JSON; reject them the way a strict parser would.
    raise ValueError(f"invalid JSON constant {name}")


class _Context:
    # The attributes `_json.make_scanner` reads from its context (json.JSONDecoder's).
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo = None


_scan = _json.make_scanner(_Context())
_WS = " \t\n\r"


def loads(s):
    """Parse one JSON document (str or bytes); raise ValueError on malformed input."""
    if isinstance(s, (bytes, bytearray)):
        s = s.decode("utf-8")
    end = len(s)
    i = 0
    while i < end and s[i] in _WS:
        i += 1
    try:
        obj, i = _scan(s, i)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at offset {e.value}") from None
    except ValueError:
        raise
    except Exception as e:
        # _json's scanner reports some truncated documents (`{`, `"abc`) as a SystemError
        # when called without json.decoder's context: still malformed input.
        raise ValueError(f"invalid JSON: truncated or malformed ({type(e).__name__})") from None
    while i < end and s[i] in _WS:
        i += 1
    if i != end:
        raise ValueError(f"invalid JSON: extra data at offset {i}")
    return obj


def load_file(path):
    with open(path, "rb") as f:
        return loads(f.read())


def dumps(obj, indent=None, _level=0):
    """Serialise dicts (insertion order), lists, str, int, float, bool and None.

    indent=None gives the compact form (Go's Marshal); a string such as "  " or "\\t" gives
    Go's MarshalIndent layout (empty containers stay `{}` / `[]`).
    """
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    t = type(obj)
    if t is str:
        return _enc_str(obj)
    if t is int:
        return int.__repr__(obj)
    if t is float:
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError("cannot encode NaN or Infinity as JSON")
        r = float.__repr__(obj)
        return r[:-2] if r.endswith(".0") else r
    if t is dict or isinstance(obj, dict):
        if not obj:
            return "{}"
        if indent is None:
            return "{" + ",".join(_enc_str(str(k)) + ":" + dumps(v) for k, v in obj.items()) + "}"
        pad = "\n" + indent * (_level + 1)
        items = [_enc_str(str(k)) + ": " + dumps(v, indent, _level + 1) for k, v in obj.items()]
        return "{" + pad + ("," + pad).join(items) + "\n" + indent * _level + "}"
    if t is list or t is tuple or isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        if indent is None:
            return "[" + ",".join(dumps(v) for v in obj) + "]"
        pad = "\n" + indent * (_level + 1)
        items = [dumps(v, indent, _level + 1) for v in obj]
        return "[" + pad + ("," + pad).join(items) + "\n" + indent * _level + "]"
    raise TypeError(f"cannot encode {t.__name__} as JSON")
