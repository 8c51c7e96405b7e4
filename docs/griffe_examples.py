"""A griffe extension for the API reference (mkdocs.yml loads it; it is not a page).

The package's docstrings head their examples with ``Example:``, which the Google style of
griffe reads as an admonition, not as an examples section, and then renders the code as
Markdown (a doctest's ``['a', 'b']`` output becomes a broken link). Here the heading becomes
``Examples:`` (doctests render as code), and an example that is plain code without ``>>>``
prompts is fenced as Python, so the docstrings render as they are written.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Examples?:\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def rewrite_examples(text: str) -> str:
    """`text` (a docstring) with each ``Example:`` section made a Google ``Examples:`` section."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _HEADING.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        heading_indent = len(match.group(1))
        body_end = i + 1
        while body_end < len(lines) and (not lines[body_end].strip() or _indent(lines[body_end]) > heading_indent):
            body_end += 1
        body = lines[i + 1:body_end]
        while body and not body[-1].strip():  # trailing blank lines stay outside the fence
            body_end -= 1
            body.pop()
        out.append(f"{match.group(1)}Examples:")
        code = [line for line in body if line.strip()]
        plain_code = code and not any(line.lstrip().startswith((">>>", "```")) for line in code)
        if plain_code:
            fence = " " * min(_indent(line) for line in code)
            out.extend([f"{fence}```python", *body, f"{fence}```"])
        else:
            out.extend(body)
        i = body_end
    return "\n".join(out)


class ExampleSections(griffe.Extension):
    """Read a docstring's ``Example:`` heading as the ``Examples:`` section."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite_examples(obj.docstring.value)
