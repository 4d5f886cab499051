#!/usr/bin/env python3
"""Startup benchmark, runnable from a checkout: `sudo benches/startup.py [options]`.

A thin wrapper over `python -m runh.bench` (also `runh bench`); `--help` lists options.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from runh.bench.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
