"""``python -m fulcrum_core claims --md OUT.md --csv OUT.csv SUMMARY.json...``"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .claims import ledger_rows, write_ledger


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fulcrum_core")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("claims", help="aggregate summary.json claims into the ledger")
    p.add_argument("--md", required=True, type=Path)
    p.add_argument("--csv", required=True, type=Path)
    p.add_argument("summaries", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        rows = ledger_rows(args.summaries)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.md.parent.mkdir(parents=True, exist_ok=True)
    write_ledger(rows, args.md, args.csv)
    print(f"wrote {args.md} and {args.csv}: {len(rows)} claims")
    return 0


if __name__ == "__main__":
    sys.exit(main())
