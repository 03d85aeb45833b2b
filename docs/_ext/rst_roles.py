"""A griffe extension for the API reference: render the rst habits of our docstrings.

The package's docstrings are prose written for both ``help()`` and the docs. They use a few
reStructuredText habits that Markdown would show literally or as code:

- ``:class:`~aiocompute.WaitTimeout``` (and ``:meth:``, ``:func:``, ``:attr:``, ``:mod:``,
  ``:exc:``, ``:data:``, ``:obj:``) become code spans; a leading ``~`` keeps the last part
  of the dotted name, as Sphinx does;
- a paragraph ending in ``::`` introduces a literal block: it ends in ``:`` instead, and the
  indented block after it stays a code block;
- any other indented block (after a blank line, or after a line ending in ``:``) is prose,
  as in rst: each line at the block's own indent becomes a list item, deeper lines continue
  it. Google-style sections (``Args:``, ``Attributes:``...) are left to the parser.

Double-backtick literals need nothing: Markdown reads them as code spans already.
Loaded by mkdocs.yml (``extensions: - docs/_ext/rst_roles.py:RstRoles``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|const):`(~?)([^`]+)`")
_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Attributes|Returns?|Yields?|Raises|Exceptions|"
    r"Warns|Warnings?|Examples?|Notes?|Other Parameters|Keyword Args|Keyword Arguments|"
    r"Receives|Methods|Functions|Classes|Modules|Type Aliases|Todo)\s*:\s*$"
)
_ITEM_HEAD = re.compile(r"^([\w.*/ ,-]{1,80}?):\s+(\S.*)$")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2).strip()
    # Sphinx's "title <target>" form: show the title.
    if target.endswith(">") and "<" in target:
        return f"`{target.split('<', 1)[0].strip()}`"
    if short:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _as_list(block: list[str]) -> list[str]:
    """An rst block quote of "name: text" lines as a Markdown list."""
    base = min(_indent(line) for line in block if line.strip())
    items: list[str] = []
    previous = ""
    for line in block:
        if not line.strip():
            continue
        # A new item: a "name: text" line at the block's indent after a finished sentence;
        # anything else continues the item (the prose is wrapped, not one item per line).
        new = not items or (
            _indent(line) <= base
            and _ITEM_HEAD.match(line.strip()) is not None
            and previous.rstrip().endswith((".", ";", ":", ")", "!", "?"))
        )
        if new:
            items.append(line.strip())
        else:
            items[-1] += " " + line.strip()
        previous = line
    out = []
    for item in items:
        head = _ITEM_HEAD.match(item)
        out.append(f"- **{head.group(1)}**: {head.group(2)}" if head else f"- {item}")
    return out


def _blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        prev = out[-1] if out else ""
        starts_block = (
            line.strip()
            and _indent(line) > 0
            and out
            and (not prev.strip() or (prev.rstrip().endswith(":") and _indent(prev) == 0))
        )
        if not starts_block:
            out.append(line)
            i += 1
            continue
        lead = next((p for p in reversed(out) if p.strip()), "")
        end = i
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > 0):
            end += 1
        while end > i and not lines[end - 1].strip():
            end -= 1
        block = lines[i:end]
        if _indent(lead) == 0 and _SECTION.match(lead.strip()):
            out.extend(block)  # a Google-style section: the parser reads it
        elif lead.rstrip().endswith("::"):
            if prev.strip():
                out.append("")
            out.extend(block)  # a literal block: stays an (indented) code block
        else:
            if prev.strip():
                out.append("")
            out.extend(_as_list(block))
        i = end
    return "\n".join(out)


def convert(text: str) -> str:
    """Return ``text`` with rst roles, literal markers and block quotes made Markdown."""
    text = _ROLE.sub(_role, text)
    text = _blocks(text)
    text = re.sub(r"(?m)^\s*::\s*$", "", text)
    return re.sub(r"(?m)(\S)::$", r"\1:", text)


class RstRoles(griffe.Extension):
    """Rewrite every docstring of the loaded package once it is fully loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value)
            for member in obj.members.values():
                if not member.is_alias:
                    stack.append(member)  # type: ignore[arg-type]
