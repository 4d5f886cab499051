"""Generate `runh/_validate.py`, a plain-Python validator for `config.schema.json`.

Run: python -m runh.schema.compile   (tests/test_schema.py checks the output is up to date)

Supported keywords are the ones the schema uses: type, properties, required, items (one schema),
minItems, minLength, enum, minimum, maximum, additionalProperties (a schema), $ref to
#/definitions/*. Any other keyword makes the generator fail, so the generated code can never
silently ignore part of the schema. Each keyword applies only to instances of its kind, as in
JSON Schema. The output answers only valid/invalid; jsonschema words the error.
"""

import os
import sys

from runh.schema import SCHEMA_PATH, load_schema

# Beside the package, not in it: create imports the validator, and a submodule of
# runh.schema would import this package's __init__ too (jsonschema's error wording, not
# needed then): one module less per create and run, 0.13-0.18 ms CPU here (in-process,
# fresh -I -S interpreters, medians/quartiles/mins of 300 interleaved rounds at load 4.3).
OUT_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_validate.py")
_IGNORED = {"description", "title", "$schema", "$id", "definitions", "$comment"}
_KNOWN = {"type", "properties", "required", "items", "minItems", "minLength", "enum", "minimum",
          "maximum", "additionalProperties", "$ref"} | _IGNORED

# jsonschema (draft 7): "integer" accepts 1.0; booleans are never numbers.
_TYPE_EXPR = {
    "object": "type({v}) is dict",
    "array": "type({v}) is list",
    "string": "type({v}) is str",
    "boolean": "type({v}) is bool",
    "integer": "(type({v}) is int or (type({v}) is float and {v}.is_integer()))",
    "number": "type({v}) in (int, float)",
    "null": "{v} is None",
}


def _fn(name):
    return "_d_" + name.replace("-", "_")


class _Gen:
    def __init__(self):
        self.depth = 0

    def var(self):
        self.depth += 1
        return f"v{self.depth}"

    def node(self, s, v, ind):
        """Lines that `return False` if v does not match schema s."""
        unknown = set(s) - _KNOWN
        if unknown:
            raise SystemExit(f"compile: unsupported schema keywords {sorted(unknown)}")
        pad = "    " * ind
        out = []
        if "$ref" in s:
            ref = s["$ref"]
            if not ref.startswith("#/definitions/"):
                raise SystemExit(f"compile: unsupported $ref {ref}")
            out.append(f"{pad}if not {_fn(ref.split('/')[-1])}({v}):\n{pad}    return False")
        types = s.get("type")
        if isinstance(types, str):
            types = [types]
        if types:
            cond = " or ".join(_TYPE_EXPR[t].format(v=v) for t in types)
            out.append(f"{pad}if not ({cond}):\n{pad}    return False")
        only = types[0] if types and len(types) == 1 else None

        def guard(kind):
            # Apply a keyword only to its kind of instance, unless `type` already ensured it.
            return None if only == kind else _TYPE_EXPR[kind].format(v=v)

        if "enum" in s:
            out.append(f"{pad}if {v} not in {tuple(s['enum'])!r}:\n{pad}    return False")
        for kw, kind, op in (("minimum", "number", "<"), ("maximum", "number", ">")):
            if kw in s:
                g = guard("integer") if only == "integer" else guard(kind)
                g = None if only == "integer" else g
                c = f"{v} {op} {s[kw]!r}"
                out.append(f"{pad}if {'(' + g + ') and ' if g else ''}{c}:\n{pad}    return False")
        if "minLength" in s:
            g = guard("string")
            c = f"len({v}) < {s['minLength']}"
            out.append(f"{pad}if {'(' + g + ') and ' if g else ''}{c}:\n{pad}    return False")
        if "minItems" in s:
            g = guard("array")
            c = f"len({v}) < {s['minItems']}"
            out.append(f"{pad}if {'(' + g + ') and ' if g else ''}{c}:\n{pad}    return False")
        obj_kw = [k for k in ("required", "properties", "additionalProperties") if k in s]
        if obj_kw:
            g = guard("object")
            inner = ind
            if g:
                out.append(f"{pad}if {g}:")
                inner = ind + 1
            ipad = "    " * inner
            body = []
            for name in s.get("required", ()):
                body.append(f"{ipad}if {name!r} not in {v}:\n{ipad}    return False")
            props = s.get("properties", {})
            for name, sub in props.items():
                w = self.var()
                sub_lines = self.node(sub, w, inner + 1)
                if sub_lines:
                    body.append(f"{ipad}{w} = {v}.get({name!r}, _MISSING)")
                    body.append(f"{ipad}if {w} is not _MISSING:")
                    body.extend(sub_lines)
            if "additionalProperties" in s:
                ap = s["additionalProperties"]
                if not isinstance(ap, dict):
                    raise SystemExit("compile: additionalProperties must be a schema")
                k, w = self.var(), self.var()
                sub_lines = self.node(ap, w, inner + 1)
                if sub_lines:
                    known = tuple(props)
                    body.append(f"{ipad}for {k}, {w} in {v}.items():")
                    if known:
                        body.append(f"{ipad}    if {k} in {known!r}:\n{ipad}        continue")
                    body.extend(sub_lines)
            if not body:
                body.append(f"{ipad}pass")
            out.extend(body)
        if "items" in s:
            sub = s["items"]
            if not isinstance(sub, dict):
                raise SystemExit("compile: items must be one schema")
            w = self.var()
            g = guard("array")
            inner = ind
            if g:
                out.append(f"{pad}if {g}:")
                inner = ind + 1
            sub_lines = self.node(sub, w, inner + 1)
            if sub_lines:
                out.append(f"{'    ' * inner}for {w} in {v}:")
                out.extend(sub_lines)
            elif g:
                out.append(f"{'    ' * inner}pass")
        return out


def generate(schema):
    import hashlib

    with open(SCHEMA_PATH, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    parts = [
        '"""Generated by `python -m runh.schema.compile` from config.schema.json: do not edit.\n\n'
        "validate(config) -> bool, with jsonschema's semantics for the keywords the schema uses.\n"
        '"""\n',
        f"SCHEMA_SHA256 = {digest!r}\n",
        "_MISSING = object()\n",
    ]
    for name, sub in schema.get("definitions", {}).items():
        g = _Gen()
        body = g.node(sub, "v0", 1) or ["    pass"]
        parts.append(f"\ndef {_fn(name)}(v0):\n" + "\n".join(body) + "\n    return True\n")
    g = _Gen()
    body = g.node(schema, "v0", 1) or ["    pass"]
    parts.append("\ndef validate(v0):\n" + "\n".join(body) + "\n    return True\n")
    return "\n".join(parts)


def main():
    src = generate(load_schema())
    if "--check" in sys.argv[1:]:
        with open(OUT_PATH) as f:
            if f.read() != src:
                print("runh/_validate.py is out of date: run python -m runh.schema.compile")
                return 1
        return 0
    with open(OUT_PATH, "w") as f:
        f.write(src)
    print(f"wrote {OUT_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
