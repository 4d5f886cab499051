"""The CRI v1 Python stubs, generated from cri_v1.proto when first needed.

Why at run time and not committed: grpcio-tools stamps the generated code with its own
version and the generated modules refuse an older grpcio or protobuf runtime (and a much
newer protobuf warns or refuses old generated code). Generating with the grpcio-tools that
is installed beside grpcio keeps the pair consistent on every machine, and keeps the .proto
the one source. It takes about 0.3 s, once per process, into a directory the caller owns
(the harness's work directory), so nothing is left anywhere else.
"""

import importlib
import os
import sys

PROTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cri_v1.proto")
_loaded = None


class StubsUnavailable(Exception):
    """grpcio or grpcio-tools is not installed, or protoc failed: one line saying which."""


def load(outdir):
    """(pb2, pb2_grpc) modules for cri_v1.proto, generated into outdir on first use."""
    global _loaded
    if _loaded is not None:
        return _loaded
    try:
        import grpc  # noqa: F401
        from grpc_tools import protoc
    except ImportError as e:
        raise StubsUnavailable(f"the CRI client needs grpcio and grpcio-tools ({e.name} is "
                               "not installed: pip install grpcio grpcio-tools)") from None
    os.makedirs(outdir, exist_ok=True)
    # protoc's own include dir (google/protobuf/*.proto) is not needed: the proto imports nothing.
    rc = protoc.main(["protoc", f"-I{os.path.dirname(PROTO)}", f"--python_out={outdir}",
                      f"--grpc_python_out={outdir}", PROTO])
    if rc != 0:
        raise StubsUnavailable(f"protoc failed on {PROTO} (exit {rc})")
    # The generated grpc module imports its sibling by bare name.
    sys.path.insert(0, outdir)
    try:
        pb2 = importlib.import_module("cri_v1_pb2")
        pb2_grpc = importlib.import_module("cri_v1_pb2_grpc")
    finally:
        sys.path.remove(outdir)
    _loaded = (pb2, pb2_grpc)
    return _loaded
