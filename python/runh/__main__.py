"""`python -m runh ...` is the CLI (handy for `-X importtime` audits)."""
from runh.cli import main

raise SystemExit(main())
