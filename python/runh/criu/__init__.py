"""Checkpoint and restore through CRIU (`runh checkpoint`, `runh restore`).

    swrk.py     the `criu swrk` process and its RPC (why RPC: see there)
    proto.py    a proto2 codec for rpc.proto (the subset of CRIU's protocol runh uses)
    plan.py     what CRIU must be told about a container: external mounts, namespaces
    dump.py     checkpoint (dump, pre-dump) of a running container
    restore.py  a container restored from images, recorded as create records one

Imported only by those two commands (and `features`, which asks swrk.find).
"""
