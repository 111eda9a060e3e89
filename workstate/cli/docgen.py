"""``python -m workstate.cli.docgen``: rewrite every generated documentation file from the code.

The texts come from :func:`workstate.tools.docgen.generate`; this module writes them under ``--root``
(the repository; default: here), or with ``--check`` writes nothing and exits 1 when a committed copy
differs from what the code says (the test suite runs the same check).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..tools.docgen import generate

COMMAND = "python -m workstate.cli.docgen"


def texts() -> dict[str, str]:
    """Every generated file's text: the engines' (:func:`~workstate.tools.docgen.generate`) and the
    conformance suite's case lists, one per dialect (``docs/conformance.md`` for qoder,
    ``docs/conformance-anthropic.md``, from :mod:`workstate.testing.conformance`)."""
    from .. import DIALECTS, QODER
    from ..testing.conformance import markdown

    pages = {
        "docs/conformance.md" if dialect is QODER else f"docs/conformance-{name}.md": markdown(dialect=dialect)
        for name, dialect in DIALECTS.items()
    }
    return {**generate(), **pages}


def drifted(root: Path) -> list[str]:
    """The generated files whose committed copy under ``root`` differs from what the code generates."""
    return [name for name, text in texts().items() if not (root / name).exists() or (root / name).read_text() != text]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: here)")
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted(args.root)
        for name in stale:
            sys.stderr.write(f"{name} is out of date: run {COMMAND}\n")
        return 1 if stale else 0
    for name, text in texts().items():
        (args.root / name).parent.mkdir(parents=True, exist_ok=True)
        (args.root / name).write_text(text)
        sys.stdout.write(f"wrote {name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
