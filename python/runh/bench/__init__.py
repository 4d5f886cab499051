"""Startup benchmark of runh against runc, crun and any runc-compatible runtime.

Run it as `runh bench`, `python -m runh.bench` or `benches/startup.py`; `--help` lists the
options. Only the bench command imports this package, so nothing here weighs on runh's
hot path.
"""
