"""reStructuredText as clean text: what a reader of the rendered page sees, not the markup.

:func:`rst_blocks` splits a reST source into typed blocks (``h1``..``h6`` headings, ``p``
paragraphs, ``sig`` API signatures, ``code`` literal blocks); :func:`clean_rst` joins their text
with blank lines, which is what gets indexed. Dropped: hyperlink targets (``.. _label:``),
comments, ``index``/``toctree``/``highlight``-style directives, directive options, heading
over- and underlines, ``::`` literal markers, and inline markup (``:func:`len``` -> ``len``,
````x```` -> ``x``, ``*x*`` -> ``x``, ```text <url>`_`` -> ``text``). Code (literal blocks,
``code-block`` directives, ``>>>`` sessions) is kept character for character, dedented.

No docutils: a line-based reading of the constructs documentation actually uses, so a
malformed file still gives text instead of an error.
"""

from __future__ import annotations

import re
import textwrap

_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}[ \t]*$")
_DIRECTIVE = re.compile(r"^\.\.[ \t]+([\w:.+-]+)::(?:[ \t]+(.*))?$")
_EXPLICIT = re.compile(r"^\.\.(?:[ \t]|$)")          # targets, comments, substitutions
_FOOTNOTE = re.compile(r"^\.\.[ \t]+\[[^\]]+\][ \t]*(.*)$")
_OPTION = re.compile(r"^:[\w][\w .-]*:(?:[ \t].*)?$")

CODE_DIRECTIVES = frozenset({"code-block", "code", "sourcecode", "doctest", "testcode", "testoutput",
                             "productionlist", "parsed-literal"})
DROPPED_DIRECTIVES = frozenset({
    "index", "toctree", "highlight", "sectionauthor", "moduleauthor", "codeauthor", "image", "include",
    "literalinclude", "raw", "contents", "tabularcolumns", "testsetup", "testcleanup", "currentmodule",
    "default-domain", "default-role", "role", "meta", "only-html", "audit-event", "impl-detail-ignored",
})
ADMONITIONS = {
    "note": "Note:", "warning": "Warning:", "seealso": "See also:", "tip": "Tip:", "important": "Important:",
    "caution": "Caution:", "attention": "Attention:", "hint": "Hint:", "danger": "Danger:", "error": "Error:",
    "versionadded": "Added in version", "versionchanged": "Changed in version", "deprecated": "Deprecated since version",
    "versionremoved": "Removed in version", "impl-detail": "CPython implementation detail:",
}
SIGNATURE_DIRECTIVES = frozenset({
    "function", "method", "class", "attribute", "data", "exception", "decorator", "decoratormethod",
    "classmethod", "staticmethod", "property", "describe", "object", "option", "cmdoption", "envvar",
    "opcode", "pdbcommand", "type", "macro", "member", "var", "module",
})

_ROLE = re.compile(r"(?::[\w.+-]+(?::[\w.+-]+)*:)`([^`]+)`")
_LITERAL = re.compile(r"(?s)``(.+?)``")
_LINK = re.compile(r"`([^`<]+?)[ \t\n]*<[^`>]+>`__?")
_REF = re.compile(r"`([^`]+)`__?")
_INTERPRETED = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"(?s)\*\*(\S(?:.*?\S)?)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(\S(?:[^*]*?\S)?)\*(?![\w*])")
_FOOTNOTE_REF = re.compile(r"[ \t]*\[(?:#[\w-]*|\d+|\*)\]_")


def clean_rst(text: str) -> str:
    """The readable text of a reST source: :func:`rst_blocks` joined by blank lines."""
    return "\n\n".join(text for _, text in rst_blocks(text))


def rst_blocks(text: str) -> list[tuple[str, str]]:
    """``[(kind, text), ...]`` with kind ``h1``..``h6``, ``p``, ``sig`` or ``code``; no empty texts."""
    reader = _Reader(text.expandtabs(8).split("\n"))
    return [(kind, body) for kind, body in reader.blocks() if body.strip()]


def _role_text(m: re.Match) -> str:
    inner = m.group(1)
    link = re.match(r"(?s)(.*?)\s*<[^<>]+>$", inner)
    if link and link.group(1).strip():
        return link.group(1).strip()
    if inner.startswith("~"):
        return inner[1:].rsplit(".", 1)[-1]
    return inner.lstrip("!")


def inline(line: str) -> str:
    """Prose without inline markup; ````literal```` contents are kept as written."""
    parts = _LITERAL.split(line)   # even: prose, odd: literal text
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part)
            continue
        part = _ROLE.sub(_role_text, part)
        part = _LINK.sub(r"\1", part)
        part = _FOOTNOTE_REF.sub("", part)
        part = _REF.sub(r"\1", part)
        part = _INTERPRETED.sub(r"\1", part)
        part = _STRONG.sub(r"\1", part)
        part = _EMPHASIS.sub(r"\1", part)
        out.append(part)
    return "".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


class _Reader:
    """A cursor over the lines; :meth:`blocks` yields ``(kind, text)``."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.i = 0
        self.levels: list[tuple[str, str]] = []   # heading styles in order of first use

    def blocks(self):
        lines = self.lines
        while self.i < len(lines):
            line = lines[self.i]
            if not line.strip():
                self.i += 1
                continue
            heading = self._heading()
            if heading:
                yield heading
                continue
            stripped = line.strip()
            if _indent(line) == 0 and _EXPLICIT.match(stripped):
                yield from self._explicit(stripped)
            elif stripped.startswith(">>>"):
                yield "code", "\n".join(self._until_blank()).strip("\n")
            else:
                yield from self._paragraph()

    # -- constructs -------------------------------------------------------------------------------
    def _heading(self) -> tuple[str, str] | None:
        lines, i = self.lines, self.i
        line = lines[i]
        if _ADORNMENT.match(line) and i + 2 < len(lines) and lines[i + 1].strip() \
                and _ADORNMENT.match(lines[i + 2]) and lines[i + 2].strip()[0] == line.strip()[0]:
            self.i = i + 3
            return self._level(("over", line.strip()[0])), inline(lines[i + 1].strip())
        if _indent(line) == 0 and not _ADORNMENT.match(line) and i + 1 < len(lines) \
                and _ADORNMENT.match(lines[i + 1]) and len(lines[i + 1].strip()) >= min(len(line.strip()), 3) \
                and not line.startswith(".."):
            self.i = i + 2
            return self._level(("under", lines[i + 1].strip()[0])), inline(line.strip())
        return None

    def _level(self, style: tuple[str, str]) -> str:
        if style not in self.levels:
            self.levels.append(style)
        return f"h{min(self.levels.index(style) + 1, 6)}"

    def _body(self, base: int) -> list[str]:
        """The lines indented deeper than ``base`` from the cursor on (blank lines inside kept), dedented."""
        lines, body = self.lines, []
        while self.i < len(lines) and (not lines[self.i].strip() or _indent(lines[self.i]) > base):
            body.append(lines[self.i])
            self.i += 1
        while body and not body[-1].strip():
            body.pop()
        return textwrap.dedent("\n".join(body)).split("\n") if body else []

    def _until_blank(self) -> list[str]:
        out = []
        while self.i < len(self.lines) and self.lines[self.i].strip():
            out.append(self.lines[self.i])
            self.i += 1
        return textwrap.dedent("\n".join(out)).split("\n")

    def _explicit(self, stripped: str):
        self.i += 1
        directive = _DIRECTIVE.match(stripped)
        body = self._body(0)
        if not directive:
            footnote = _FOOTNOTE.match(stripped)
            if footnote:   # ".. [1] text": the note's text stays; targets and comments go
                yield from _Reader([footnote.group(1), *body]).blocks()
            return
        name, arg = directive.group(1).split(":")[-1].lower(), (directive.group(2) or "").strip()
        while body and _OPTION.match(body[0].strip()):
            body.pop(0)
        while body and not body[0].strip():
            body.pop(0)
        if name in DROPPED_DIRECTIVES:
            return
        if name in CODE_DIRECTIVES:
            yield "code", "\n".join(body).strip("\n")
            return
        inner = list(_Reader(body).blocks())
        if name in SIGNATURE_DIRECTIVES:
            if arg:
                yield "sig", arg
        elif name in ADMONITIONS:
            label = f"{ADMONITIONS[name]} {inline(arg)}".strip()
            if inner and inner[0][0] == "p" and not arg:
                inner[0] = ("p", f"{label} {inner[0][1]}")
            else:
                yield "p", label + ("." if name.startswith("version") or name == "deprecated" else "")
        elif name == "rubric":
            yield "h6", inline(arg)
        elif arg:
            yield "p", inline(arg)
        yield from inner

    def _paragraph(self):
        base = _indent(self.lines[self.i])
        raw = self._until_blank()
        literal = False
        last = raw[-1].rstrip()
        if last.endswith("::"):
            literal = True
            if last.strip() == "::":
                raw = raw[:-1]
            elif last.endswith(" ::"):
                raw[-1] = last[:-3].rstrip()
            else:
                raw[-1] = last[:-1]
        if raw:
            yield "p", inline("\n".join(line.strip() for line in raw))
        if literal:
            while self.i < len(self.lines) and not self.lines[self.i].strip():
                self.i += 1
            if self.i < len(self.lines) and _indent(self.lines[self.i]) > base:
                yield "code", "\n".join(self._body(base)).strip("\n")
