"""reStructuredText as the text a reader sees: markup dropped, code blocks kept as they are.

Not a reST parser (docutils would need every Sphinx role and directive registered); a line-level
cleaner for what makes search results unreadable: link targets (``.. _label:``), heading
adornment lines (``*****``, ``=====``), directive and option lines, ``::`` literal markers,
comments, and inline roles (``:func:`os.stat``` -> ``os.stat``). Indented literal blocks (after
``::`` or a ``code-block`` directive) are kept verbatim.
"""

from __future__ import annotations

import re

_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_TARGET = re.compile(r"^\.\.\s+_[^:]*:.*$|^__ .*$")
_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+(?:([\w:-]+)::\s*(.*))?")
_OPTION = re.compile(r"^\s+:[\w -]+:.*$")
_ROLE = re.compile(r":[a-z][\w:+-]*:`([^`]+)`")
_PEP = re.compile(r":(pep|rfc):`(\d+)`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]+>`__?")
_REF = re.compile(r"`([^`]+)`_{1,2}")
_LITERAL = re.compile(r"``(.+?)``")
_EMPHASIS = re.compile(r"(?<![\w*])\*{1,2}(?=\S)(.+?)(?<=\S)\*{1,2}(?![\w*])")
_SUBST = re.compile(r"\|(\w[\w -]*)\|_?")
_FOOTNOTE = re.compile(r"\s?\[(?:#\w*|\d+|\*)\]_")
_ESCAPE = re.compile(r"\\(\s|.|$)")  # a backslash and the character it escapes (none at the end)
_HIDDEN = 0xF0000  # escaped characters stand in for themselves as these (Unicode's private use plane 15)

#: Directives whose content is code, shown verbatim.
CODE_DIRECTIVES = frozenset({"code-block", "code", "sourcecode", "literalinclude", "doctest", "testcode",
                             "testoutput", "productionlist", "highlight-block"})
#: Admonitions: their name becomes a label ("Note: ...").
ADMONITIONS = frozenset({"note", "warning", "tip", "important", "caution", "attention", "danger", "hint",
                         "error", "seealso", "versionadded", "versionchanged", "deprecated", "admonition"})
#: Object descriptions (``.. function:: name(args)``): their signature is kept as a line.
SIGNATURES = frozenset({"function", "method", "class", "exception", "data", "attribute", "module",
                        "classmethod", "staticmethod", "decorator", "describe", "option", "envvar",
                        "c:function", "c:type", "c:macro", "c:member", "c:var", "py:function",
                        "py:method", "py:class", "py:data", "py:attribute", "opcode", "cmdoption",
                        "coroutinefunction", "coroutinemethod", "abstractmethod", "property",
                        "kernel-doc"})


def clean_rst_inline(text: str) -> str:
    r"""Inline markup of one line dropped: ``"Access to :func:`os.stat` results"`` ->
    ``"Access to os.stat results"``; ``:pep:`8``` -> ``PEP 8``; links, literals, emphasis.

    Inline literals keep their content as typed (a literal ``\n`` stays ``\n``: reST applies no
    escapes inside them); elsewhere a backslash escapes the next character (``\*`` -> ``*``,
    ``\\`` -> ``\``) and a backslash-space only separates markup from the text after it.
    """
    parts = _LITERAL.split(text)  # text, literal, text, ...: the literals' content verbatim
    return "".join(part if i % 2 else _clean_markup(part) for i, part in enumerate(parts))


def _clean_markup(text: str) -> str:
    """:func:`clean_rst_inline` on text without inline literals."""
    escaped: list[str] = []  # escaped characters, hidden from the markup patterns until the end

    def hide(match: re.Match) -> str:
        char = match.group(1)
        if not char or char.isspace():
            return ""
        escaped.append(char)
        return chr(_HIDDEN + len(escaped) - 1)

    text = _ESCAPE.sub(hide, text)
    text = _PEP.sub(lambda m: f"{m.group(1).upper()} {m.group(2)}", text)
    text = _ROLE.sub(_role_text, text)
    text = _LINK.sub(r"\1", text)
    text = _REF.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = _SUBST.sub(r"\1", text)
    text = _FOOTNOTE.sub("", text)
    for i, char in enumerate(escaped):
        text = text.replace(chr(_HIDDEN + i), char)
    return text


def clean_rst_title(text: str) -> str:
    """:func:`clean_rst_inline` on one line with runs of whitespace collapsed: a heading or a synopsis."""
    return " ".join(clean_rst_inline(text).split())


def _role_text(match: re.Match) -> str:
    """What Sphinx shows for a role: its title (``title <target>``), else the target without ``~``/``!``."""
    content = match.group(1)
    if content.endswith(">") and "<" in content:
        title = content[: content.rindex("<")].strip()
        if title:
            return title
        content = content[content.rindex("<") + 1: -1]
    return content.lstrip("~!")


def rst_to_text(text: str) -> str:
    """The readable text of a reST document (see the module docstring); line structure is kept."""
    return rst_document(text)[0]


def rst_document(text: str) -> tuple[str, list[tuple[int, str, str]]]:
    """:func:`rst_to_text` and the section headings, ``(level, title, line)`` in document order
    (levels by the order in which the adornment styles first appear, as docutils numbers them)."""
    out: list[str] = []
    heads: list[tuple[int, str, str]] = []
    styles: dict[tuple[str, bool], int] = {}  # (adornment character, overlined) -> level
    lines = text.splitlines()
    literal_indent: int | None = None     # inside a literal block indented deeper than this
    skip_indent: int | None = None        # inside a dropped directive's body (comments, toctree...)
    pending_literal = False               # the previous paragraph ended with "::"
    after_directive = False               # option lines ("   :noindex:") may follow
    for n, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if after_directive and stripped and _OPTION.match(line):
            continue
        after_directive = after_directive and not stripped
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                out.append(line)
                continue
            literal_indent = None
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if pending_literal and stripped:
            pending_literal = False
            if indent > _indent_of_last(out):
                literal_indent = _indent_of_last(out)
                out.append(line)
                continue
        directive = _DIRECTIVE.match(line)
        if directive:
            name, arg = (directive.group(2) or "").lower(), (directive.group(3) or "").strip()
            base = len(directive.group(1))
            if name in CODE_DIRECTIVES:
                literal_indent = base
            elif name in ADMONITIONS:
                label = name.replace("seealso", "see also").replace("version", "version ").capitalize()
                out.append(" " * base + (f"{label}: {clean_rst_inline(arg)}" if arg else f"{label}:"))
            elif name in SIGNATURES and arg:
                out.append(" " * base + clean_rst_inline(arg))
            elif name and arg and name not in ("index", "toctree", "highlight", "currentmodule", "only",
                                               "sectionauthor", "moduleauthor", "include", "image",
                                               "figure", "raw", "tabularcolumns", "default-role",
                                               "testsetup", "testcleanup", "audit-event"):
                out.append(" " * base + clean_rst_inline(arg))           # e.g. ".. topic:: Title"
            else:
                skip_indent = base                                        # comments, toctree, index ...
            after_directive = True
            continue
        if _ADORNMENT.match(stripped):
            title = lines[n - 1].strip() if n else ""
            if title and not _ADORNMENT.match(title) and len(stripped) >= len(title) and out \
                    and out[-1] == clean_rst_inline(lines[n - 1]):  # an underline: the title was text
                over = lines[n - 2].strip() if n > 1 else ""
                overlined = over[:1] == stripped[0] and bool(_ADORNMENT.match(over))
                level = styles.setdefault((stripped[0], overlined), len(styles) + 1)
                heads.append((level, clean_rst_title(title), out[-1]))
            continue
        if _TARGET.match(stripped):
            continue
        if stripped == "::":
            pending_literal = True
            continue
        if stripped.endswith("::"):
            pending_literal = True
            line = line.rstrip()[:-1]                                     # "Example::" -> "Example:"
        out.append(clean_rst_inline(line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n", heads


def _indent_of_last(lines: list[str]) -> int:
    for line in reversed(lines):
        if line.strip():
            return len(line) - len(line.lstrip())
    return 0

