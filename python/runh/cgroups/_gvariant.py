"""GVariant text format (docs.gtk.org/glib/gvariant-text-format.html), the values of
`org.systemd.property.<Name>` annotations, as runc reads them: parse(text) gives the
D-Bus (signature, value) pair that the sd-bus client (_dbus.py) sends as a variant.

Covered: booleans, numbers (an unannotated integer is an int32, one with a point or an
exponent a double), strings in single or double quotes with backslash escapes, arrays
and tuples of those, type keywords (`uint64 5`, `boolean true`, ...) and `@TYPE value`
(`@as []`). Not covered (an error naming the annotation): dictionaries, maybes,
variants, bytestrings and handles.
"""

KEYWORDS = {"boolean": "b", "byte": "y", "int16": "n", "uint16": "q", "int32": "i",
            "uint32": "u", "int64": "x", "uint64": "t", "double": "d", "string": "s",
            "objectpath": "o", "signature": "g"}
_RANGES = {"y": (0, 255), "n": (-(1 << 15), (1 << 15) - 1), "q": (0, (1 << 16) - 1),
           "i": (-(1 << 31), (1 << 31) - 1), "u": (0, (1 << 32) - 1),
           "x": (-(1 << 63), (1 << 63) - 1), "t": (0, (1 << 64) - 1)}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "\\": "\\",
            "'": "'", '"': '"'}


class GVariantError(ValueError):
    pass


def parse(text):
    """(signature, value) of one GVariant text value."""
    p = _Parser(text)
    sig, value = p.value(None)
    p.space()
    if p.i != len(p.s):
        raise GVariantError(f"unexpected {p.s[p.i:]!r} after the value")
    return sig, value


def _one_type(s, i):
    """The end index of the complete type starting at s[i]."""
    if i >= len(s):
        raise GVariantError("incomplete type")
    c = s[i]
    if c in "bynqiuxtdsog":
        return i + 1
    if c == "a":
        return _one_type(s, i + 1)
    if c == "(":
        i += 1
        while i < len(s) and s[i] != ")":
            i = _one_type(s, i)
        if i >= len(s):
            raise GVariantError("unterminated tuple type")
        return i + 1
    raise GVariantError(f"unsupported type {c!r}")


class _Parser:
    def __init__(self, s):
        self.s, self.i = s, 0

    def space(self):
        while self.i < len(self.s) and self.s[self.i] in " \t\n\r":
            self.i += 1

    def peek(self):
        self.space()
        return self.s[self.i] if self.i < len(self.s) else ""

    def word(self):
        j = self.i
        while j < len(self.s) and (self.s[j].isalnum() or self.s[j] in "_+-."):
            j += 1
        return self.s[self.i:j]

    def value(self, want):
        c = self.peek()
        if c == "@":
            end = _one_type(self.s, self.i + 1)
            t = self.s[self.i + 1:end]
            self.i = end
            if want is not None and want != t:
                raise GVariantError(f"type {t} where {want} is expected")
            return self.value(t)
        if c == "[":
            return self.array(want)
        if c == "(":
            return self.tuple(want)
        if c and c in "'\"":
            s = self.string()
            if want not in (None, "s", "o", "g"):
                raise GVariantError(f"a string where {want} is expected")
            return want or "s", s
        w = self.word()
        if not w:
            raise GVariantError(f"unexpected {self.s[self.i:self.i + 10]!r}")
        if w in KEYWORDS:
            self.i += len(w)
            t = KEYWORDS[w]
            if want is not None and want != t:
                raise GVariantError(f"{w} where {want} is expected")
            return self.value(t)
        self.i += len(w)
        if w in ("true", "false"):
            if want not in (None, "b"):
                raise GVariantError(f"a boolean where {want} is expected")
            return "b", w == "true"
        return self.number(w, want)

    def number(self, w, want):
        is_float = want == "d" or ("." in w or "e" in w.lower()) and not w.lower().startswith(("0x", "-0x"))
        try:
            if is_float:
                if want not in (None, "d"):
                    raise ValueError
                return "d", float(w)
            n = int(w, 0)
        except ValueError:
            raise GVariantError(f"bad number {w!r}" + (f" for type {want}" if want else "")) from None
        t = want or "i"
        if t not in _RANGES:
            raise GVariantError(f"a number where {t} is expected")
        lo, hi = _RANGES[t]
        if not lo <= n <= hi:
            raise GVariantError(f"{n} is out of range for type {t}")
        return t, n

    def string(self):
        q = self.s[self.i]
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == q:
                return "".join(out)
            if c == "\\" and self.i < len(self.s):
                e = self.s[self.i]
                self.i += 1
                if e in "uU":
                    n = 4 if e == "u" else 8
                    try:
                        out.append(chr(int(self.s[self.i:self.i + n], 16)))
                    except ValueError:
                        raise GVariantError("bad \\u escape") from None
                    self.i += n
                else:
                    out.append(_ESCAPES.get(e, e))
                continue
            out.append(c)
        raise GVariantError("unterminated string")

    def _items(self, close, wants):
        self.i += 1
        items = []
        while self.peek() != close:
            if not self.peek():
                raise GVariantError(f"missing {close!r}")
            if items:
                if self.peek() != ",":
                    raise GVariantError(f"expected ',' or {close!r}")
                self.i += 1
            items.append(self.value(wants(items)))
        self.i += 1
        return items

    def array(self, want):
        if want is not None and not want.startswith("a"):
            raise GVariantError(f"an array where {want} is expected")
        elem = want[1:] if want else None
        # Untyped, the first element's type is every element's (GVariant's rule).
        items = self._items("]", lambda got: elem if elem is not None else (got[0][0] if got else None))
        if not items and elem is None:
            raise GVariantError("an empty array needs a type: @as [] for example")
        t = elem if elem is not None else items[0][0]
        return "a" + t, [v for _, v in items]

    def tuple(self, want):
        wants = None
        if want is not None:
            if not want.startswith("("):
                raise GVariantError(f"a tuple where {want} is expected")
            wants, j = [], 1
            while want[j] != ")":
                k = _one_type(want, j)
                wants.append(want[j:k])
                j = k
        items = self._items(")", lambda got: wants[len(got)] if wants and len(got) < len(wants) else None)
        if wants is not None and len(items) != len(wants):
            raise GVariantError(f"{len(items)} values for type {want}")
        return "(" + "".join(s for s, _ in items) + ")", tuple(v for _, v in items)
