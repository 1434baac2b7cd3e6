"""Print the kill table: ``python -m tests.wrong_backends [--family F ...] [--markdown]``."""

from __future__ import annotations

import argparse
import sys

from . import CATALOGUE
from ._table import Table, format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.wrong_backends", description=__doc__)
    parser.add_argument("--family", action="append", help="only the wrong backends of this family")
    parser.add_argument("--name", action="append", help="only this wrong backend (catalogue name)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--max-examples", type=int, default=None, help="examples per property (default: as in CI)"
    )
    args = parser.parse_args(argv)
    table = Table()
    kills = []
    for name, cls in CATALOGUE.items():
        if (args.family and cls.family not in args.family) or (args.name and name not in args.name):
            continue
        kw = {} if args.max_examples is None else {"max_examples": args.max_examples}
        kills.append(table.kill(name, cls, **kw))
        print(f"{name}: {kills[-1].seconds:.1f} s", file=sys.stderr, flush=True)
    print(format_table(kills, markdown=args.markdown))
    return 0 if all(k.caught for k in kills) else 1


if __name__ == "__main__":
    sys.exit(main())
