"""config.json validation with jsonschema's semantics at the cost of a few plain `if`s.

`runh/_validate.py` (beside this package, so that create does not import it: see
compile.py) is generated from `config.schema.json` by `python -m runh.schema.compile`
(importing jsonschema costs 62 ms; the generated check runs in microseconds). Only when it
says "invalid" is jsonschema imported, to find and word the precise error.
"""

# String slicing, not os.path: importing os costs 0.9 ms under -I -S here.
SCHEMA_PATH = __file__.rpartition("/")[0] + "/config.schema.json"


def load_schema():
    from runh.jsonio import load_file

    return load_file(SCHEMA_PATH)


def is_valid(config):
    from runh._validate import validate

    return validate(config)


_TYPE_WORDS = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def json_path(parts):
    """['process', 'args', 0] -> 'process.args[0]'"""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _plain(err):
    """Word a jsonschema ValidationError as (path, message) for a person."""
    from runh.jsonio import dumps

    path = list(err.absolute_path)
    v, arg = err.validator, err.validator_value
    if v == "required":
        # jsonschema reports at the object; name the missing member instead.
        missing = next((k for k in arg if not isinstance(err.instance, dict) or k not in err.instance), arg[0])
        return path + [missing], "is required"
    if v == "type":
        types = arg if isinstance(arg, list) else [arg]
        return path, "must be " + " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    if v == "minItems":
        return path, "must be a non-empty array" if arg == 1 else f"must have at least {arg} items"
    if v == "minLength":
        return path, "must be a non-empty string" if arg == 1 else f"must be at least {arg} characters"
    if v == "enum":
        return path, "must be one of " + ", ".join(dumps(a) for a in arg)
    if v == "minimum":
        return path, f"must be >= {arg}"
    if v == "maximum":
        return path, f"must be <= {arg}"
    return path, err.message


_validator = None  # jsonschema's validator, built once per process (error path only)


def explain(config):
    """The first precise error for an invalid config, as `config.json: <path>: <message>`,
    or None if jsonschema finds none (which the tests make sure never happens)."""
    global _validator
    import jsonschema

    if _validator is None:
        schema = load_schema()
        _validator = jsonschema.validators.validator_for(schema)(schema)
    err = jsonschema.exceptions.best_match(_validator.iter_errors(config))
    if err is None:
        return None
    path, msg = _plain(err)
    where = json_path(path)
    return f"config.json: {where}: {msg}" if where else f"config.json: {msg}"
