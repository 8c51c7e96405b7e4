"""What a user gets from PyPI: metadata, license, the README as PyPI renders it, the typed marker.

PyPI shows README.md without the repository's files, so every link in it must be absolute;
links into the repository must start with ``project.urls.Repository`` and name a file that
exists here (a renamed page breaks the test, not the PyPI page). ``make dist-check`` builds the
distributions and runs ``twine check --strict``; this test checks the sources it builds from.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]

# [text](target), ![alt](target), <img src="target">, <a href="target">, and [label]: target definitions.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def readme_links(text: str) -> list[str]:
    """Every link target in Markdown `text`, outside code blocks and inline code."""
    prose = _FENCE.sub("", text)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return [m.group(1) for pattern in (_LINK, _HTML, _DEFINITION) for m in pattern.finditer(prose)]


def relative_links(text: str) -> list[str]:
    return [link for link in readme_links(text) if not re.match(r"^(https://|http://|mailto:)", link)]


def test_link_finder_finds_relative_links():
    """The check itself: a relative link of each kind is found, absolute ones and code are not."""
    text = """See [models](docs/models.md), ![pic](docs/img/a.png), [top](#install),
<img src="docs/img/b.png">, [ok](https://example.org/x) and `[not](a link)`.

[ref]: docs/training.md

```python
x = d["k"](y)  # [code](not/a/link)
```
"""
    assert relative_links(text) == ["docs/models.md", "docs/img/a.png", "#install", "docs/img/b.png",
                                    "docs/training.md"]


def test_readme_links_are_absolute_and_point_at_files_that_exist():
    text = (ROOT / "README.md").read_text()
    assert relative_links(text) == [], "README.md is shown on PyPI: make these links absolute"
    repository = PROJECT["urls"]["Repository"].rstrip("/")
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repository)
    into_repo = [link for link in readme_links(text) if link.startswith(repository)]
    assert into_repo, "README.md links nowhere into the repository"
    for link in into_repo:
        rest = link[len(repository):].split("#")[0]
        if not rest:
            continue  # the repository's front page (its README), possibly with an anchor
        match = re.fullmatch(r"/(?:blob|raw|tree)/main/(.+)", rest)
        assert match, f"{link}: expected {repository}/blob/main/PATH (or raw/ for pictures)"
        assert (ROOT / match.group(1)).exists(), f"{link} names {match.group(1)}, which is not in the repository"


def test_readme_says_how_to_install_with_torch_cpu_wheels():
    text = (ROOT / "README.md").read_text()
    install = re.search(r"^## Install\n(.*?)^## ", text, re.S | re.M)
    assert install, "README.md lacks its Install section"
    commands = [line.split("#")[0].strip() for line in install.group(1).splitlines() if line.startswith("pip ")]
    assert commands[:2] == ["pip install torch --index-url https://download.pytorch.org/whl/cpu",
                            "pip install cifarnets"]


def test_license_is_an_spdx_expression_with_its_file():
    assert PROJECT["license"] == "MIT"  # an SPDX expression (PEP 639), not the deprecated {text = ...} table
    files = PROJECT["license-files"]
    assert files and all((ROOT / f).is_file() for f in files)
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert not any(c.startswith("License ::") for c in PROJECT.get("classifiers", [])), \
        "a license classifier beside an SPDX license is an error for setuptools"
    backend = PYPROJECT["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+).*", r) and int(re.match(r"setuptools>=(\d+)", r).group(1)) >= 77
               for r in backend), "project.license as a string needs setuptools>=77"


def test_package_is_typed_and_ships_the_marker():
    assert (ROOT / "cifarnets" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["cifarnets"]
    mypy = PYPROJECT["tool"]["mypy"]
    assert mypy["files"] == ["cifarnets"] and not mypy.get("strict", False)


def test_ci_builds_docs_checks_types_and_distributions():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip().startswith("make ")]
    assert commands[0] == "make test"  # the README's test command comes first
    assert {"make docs-html", "make typecheck", "make dist-check"} <= set(commands)
    makefile = (ROOT / "Makefile").read_text()
    for target in ("docs-html", "typecheck", "dist-check"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile lacks {target}"
    assert "mkdocs build --strict" in makefile and "twine check --strict" in makefile


def test_test_extra_installs_what_ci_runs():
    extras = PROJECT["optional-dependencies"]
    assert "mkdocstrings[python]" in " ".join(extras["docs"])
    assert any(dep.startswith("cifarnets[") and "docs" in dep for dep in extras["test"])
    for tool in ("mypy", "build", "twine", "nbclient", "ipykernel"):
        assert any(re.match(rf"{tool}\b", dep) for dep in extras["test"]), tool
