"""The documentation site's sources: every page is in the navigation, every API page documents a
module that exists, and the griffe extension renders the package's ``Example:`` sections as code.

The site itself is built by ``make docs-html`` (``mkdocs build --strict``) in CI.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
yaml = pytest.importorskip("yaml")


def nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = nav_pages(config["nav"])
    assert all((DOCS / page).is_file() for page in pages), [p for p in pages if not (DOCS / p).is_file()]
    generated = ("img", "_runs")  # cifarnets plot's results.md and training runs: not pages (exclude_docs)
    written = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if p.relative_to(DOCS).parts[0] not in generated}
    assert written == set(pages), f"pages missing from mkdocs.yml's nav: {sorted(written - set(pages))}"


def test_api_pages_name_importable_modules():
    modules = set()
    for page in (DOCS / "api").glob("*.md"):
        modules |= set(re.findall(r"^::: ([\w.]+)$", page.read_text(), re.M))
    for required in ("cifarnets", "cifarnets.errors", "cifarnets.registry", "cifarnets.models", "cifarnets.data",
                     "cifarnets.train", "cifarnets.analysis", "cifarnets.plots", "cifarnets.sweep", "cifarnets.hub"):
        assert required in modules
    for module in modules:
        importlib.import_module(module)


def test_example_sections_become_google_examples():
    sys.path.insert(0, str(DOCS))
    try:
        from griffe_examples import rewrite_examples
    finally:
        sys.path.remove(str(DOCS))
    doctest = "Find models.\n\nExample:\n    >>> f(1)\n    ['a', 'b']\n\nMore text."
    assert rewrite_examples(doctest) == "Find models.\n\nExamples:\n    >>> f(1)\n    ['a', 'b']\n\nMore text."
    plain = "Load.\n\n    Example:\n        m = load('x')\n        m['k']\n\n    Tail."
    assert rewrite_examples(plain) == ("Load.\n\n    Examples:\n        ```python\n        m = load('x')\n"
                                       "        m['k']\n        ```\n\n    Tail.")
    assert rewrite_examples("No example here.\nExamples are elsewhere.") == "No example here.\nExamples are elsewhere."
