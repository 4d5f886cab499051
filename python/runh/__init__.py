"""runh: a runc-compatible OCI runtime; a thin Python front end over the Rust core `runh._core`.

Importing `runh` costs nothing beyond this file: every runh call pays interpreter start-up, so
`Container` (and what it pulls in) is loaded only when first used (module __getattr__).
"""

__version__ = "0.1.0"
# The runtime-spec version runh implements; printed by `--version` and used by `runh spec`.
SPEC_VERSION = "1.3.0"

__all__ = ["Container", "__version__", "SPEC_VERSION"]


def __getattr__(name):
    if name == "Container":
        from runh.container import Container

        return Container
    raise AttributeError(f"module 'runh' has no attribute {name!r}")
