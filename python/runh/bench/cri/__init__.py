"""Kubernetes' view of a runtime: a private containerd with its CRI plugin, runh (and runc,
crun) as RuntimeClass handlers, and a CRI v1 client.

Used by the CRI tests (tests/test_cri*.py) and by `runh bench -s cri`. Needs Debian's
containerd and the grpcio and grpcio-tools packages; nothing here is imported by runh itself.

- containerd.py: the daemon (config, images, start/restart/stop, cleanup)
- client.py: the gRPC client, config builders, streaming Exec over WebSocket
- pod.py: a pod as kubelet drives it (sandbox, containers, logs, removal with its cgroups)
- cri_v1.proto: the CRI v1 subset, the wire contract; stubs.py generates its Python code
"""
