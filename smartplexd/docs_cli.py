"""The command line of the generated documents (``python -m smartplexd.docs_api``, ``.docs_config``).

Each writes its file, or with ``--check`` exits 1 when the committed file differs from what it would
write, so CI and the tests catch a document that has drifted from its source.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def main(module: str, description: str, doc: Path, render: Callable[[], str], argv: list[str] | None = None) -> int:
    """Parse ``argv`` for ``python -m {module}``, then write ``render()`` to ``doc`` (or ``--output``), or
    with ``--check`` compare it with the file; returns the exit status."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--check", action="store_true", help=f"exit 1 when {doc.parent.name}/{doc.name} is stale")
    parser.add_argument("--output", type=Path, default=doc)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python -m {module}", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0
