"""Regenerate the parts of README.md and docs/ that are computed from the code.

    python docs/generate.py            # rewrite the generated blocks
    python docs/generate.py --check    # exit 1 if any is stale (what the tests check)

Generated blocks sit between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers;
everything outside them is written by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generated_blocks() -> dict[str, str]:
    """Block name -> its Markdown, computed from the registry."""
    from cifarnets.registry import model_table

    return {"model-table": model_table()}


def fill(text: str, blocks: dict[str, str]) -> str:
    for name, content in blocks.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(lambda m, content=content: m.group(1) + content + "\n" + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args()
    blocks = generated_blocks()
    stale = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        new = fill(text, blocks)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new)
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
