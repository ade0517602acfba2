"""Find the files to index under one or more roots.

:func:`walk` yields a :class:`FileEntry` for every supported file, in a deterministic
order, and records everything it had to skip for a reason the user may care about
(unreadable directories, files over the size limit, broken links, unsupported explicit
files) in its ``failures`` list.

Patterns use gitignore syntax (via ``pathspec``) and are matched, case-sensitively,
against the path relative to its root with ``/`` separators: ``*.md`` matches at any
depth, ``docs/**/*.md`` and ``/top.txt`` are anchored, ``build/`` matches a directory
and everything under it. (The supported-suffix check itself is case-insensitive.)
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from collections.abc import Iterator, Sequence

from pathspec import GitIgnoreSpec

from indexer.extract import DEFAULT_MAX_BYTES, SUPPORTED_SUFFIXES

logger = logging.getLogger(__name__)

JUNK_DIRS = frozenset(
    {"__pycache__", "node_modules", ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".mypy_cache",
     ".pytest_cache", ".ruff_cache", ".idea", ".vscode", "site-packages", ".ipynb_checkpoints"}
)  # fmt: skip
"""Directory names that are never descended into."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file to index. ``path`` is absolute and resolved; ``root`` is the resolved root."""

    path: Path
    root: Path
    size: int
    mtime: float

    @property
    def relative_path(self) -> str:
        """The path relative to its root, ``/``-separated (the file name for a file root)."""
        if self.path == self.root:
            return self.path.name
        try:
            return self.path.relative_to(self.root).as_posix()
        except ValueError:  # reached through a symlink pointing outside the root
            return self.path.name


def is_under(path: Path, root: Path) -> bool:
    """True when ``path`` is ``root`` or lies below it (both already resolved or both as stored)."""
    return path == root or root in path.parents


class SkippedPath(NamedTuple):
    """Something the walk could not or would not take, with a human-readable reason."""

    path: Path
    reason: str


class Walk(Iterator[FileEntry]):
    """The iterator :func:`walk` returns; ``failures`` fills up as it is consumed."""

    def __init__(self, walker: _Walker, roots: list[Path]) -> None:
        self.failures: list[SkippedPath] = walker.failures
        self._entries = walker.run(roots)

    def __iter__(self) -> Walk:
        return self

    def __next__(self) -> FileEntry:
        return next(self._entries)


def walk(
    roots: Sequence[Path | str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Walk:
    """Iterate over the indexable files under ``roots``.

    Directories are walked depth-first with the entries of every directory sorted by
    name (files and subdirectories interleaved), roots in the order given. Hidden
    entries (name starting with ``.``) and :data:`JUNK_DIRS` are skipped, as are files
    whose suffix is not in ``SUPPORTED_SUFFIXES``. A root may also be a single file:
    the hidden-name rule does not apply to it, the suffix and patterns (matched against
    its name) do, and its ``FileEntry.root`` is the file itself. Symlinks are followed,
    but each real directory and file is visited once, so link loops and overlapping
    roots yield no duplicates.

    Args:
        roots: directories or files to walk.
        include: gitignore-style patterns; when given, only matching files are yielded.
        exclude: gitignore-style patterns; matching files and directories are skipped.
        max_bytes: larger files are not yielded but recorded as failures.

    Returns:
        A :class:`Walk` iterator of :class:`FileEntry`. Its ``failures`` list of
        :class:`SkippedPath` ``(path, reason)`` records, as the walk proceeds,
        unreadable directories and files, files over ``max_bytes``, broken symlinks
        and unsupported file roots (each is also logged as a warning). Read it after
        consuming the iterator.

    Raises:
        FileNotFoundError: a root does not exist (raised by this call, before iterating).
        ValueError: a pattern is not valid gitignore syntax.
    """
    resolved_roots = [_resolve_root(Path(root)) for root in roots]
    include_spec = _compile(include, "include")
    exclude_spec = _compile(exclude, "exclude")
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
    return Walk(_Walker(include_spec, exclude_spec, max_bytes), resolved_roots)


def _resolve_root(root: Path) -> Path:
    expanded = root.expanduser()
    if not expanded.exists():
        raise FileNotFoundError(
            f"root {str(root)!r} does not exist (resolved to {expanded.absolute()}); "
            "check the path or remove it from the roots"
        )
    return expanded.resolve()


def _compile(patterns: Sequence[str], what: str) -> GitIgnoreSpec | None:
    if isinstance(patterns, str):
        patterns = [patterns]
    lines = [p for p in patterns if p and p.strip()]
    if not lines:
        return None
    try:
        return GitIgnoreSpec.from_lines(lines)
    except Exception as exc:  # noqa: BLE001 - pathspec raises various errors
        raise ValueError(f"invalid {what} pattern in {lines!r}: {exc}") from exc


class _Walker:
    def __init__(
        self,
        include: GitIgnoreSpec | None,
        exclude: GitIgnoreSpec | None,
        max_bytes: int,
    ) -> None:
        self.include = include
        self.exclude = exclude
        self.max_bytes = max_bytes
        self.failures: list[SkippedPath] = []
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: set[Path] = set()

    def run(self, roots: list[Path]) -> Iterator[FileEntry]:
        for root in roots:
            if root.is_dir():
                yield from self._walk_dir(root)
            else:
                entry = self._file_root(root)
                if entry is not None:
                    yield entry

    def _file_root(self, path: Path) -> FileEntry | None:
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            self._fail(path, f"unsupported file type {path.suffix or '(no suffix)'!r}; the types that can be "
                             f"indexed: {' '.join(sorted(SUPPORTED_SUFFIXES))}")
            return None
        if not self._wanted(path.name):
            return None
        return self._entry(path, path)

    def _walk_dir(self, root: Path) -> Iterator[FileEntry]:
        """Depth-first, the entries of every directory sorted by name."""
        if not self._first_visit(root):
            return
        stack = [iter(self._list(root, ""))]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            name, path, rel = item
            if name.startswith("."):
                continue
            try:
                is_dir = path.is_dir()  # follows symlinks
            except OSError as exc:
                self._fail(path, f"cannot stat: {exc.strerror or exc}")
                continue
            if is_dir:
                if name in JUNK_DIRS or self._excluded(rel + "/"):
                    continue
                if self._first_visit(path):
                    stack.append(iter(self._list(path, rel + "/")))
                continue
            entry = self._candidate(path, rel, root)
            if entry is not None:
                yield entry

    def _fail(self, path: Path, reason: str) -> None:
        logger.warning("skipping %s: %s", path, reason)
        self.failures.append(SkippedPath(path, reason))

    def _first_visit(self, directory: Path) -> bool:
        try:
            st = directory.stat()
        except OSError as exc:
            self._fail(directory, f"cannot stat directory: {exc.strerror or exc}")
            return False
        key = (st.st_dev, st.st_ino)
        if key in self.seen_dirs:
            logger.debug("already visited %s (symlink loop or overlapping roots)", directory)
            return False
        self.seen_dirs.add(key)
        return True

    def _list(self, directory: Path, rel_dir: str) -> list[tuple[str, Path, str]]:
        try:
            with os.scandir(directory) as it:
                names = sorted(entry.name for entry in it)
        except OSError as exc:  # PermissionError and friends
            self._fail(directory, f"unreadable directory: {exc.strerror or exc}")
            return []
        return [(name, directory / name, rel_dir + name) for name in names]

    def _candidate(self, path: Path, rel: str, root: Path) -> FileEntry | None:
        if path.suffix.lower() not in SUPPORTED_SUFFIXES or not self._wanted(rel):
            return None
        if path.is_symlink() and not path.exists():
            self._fail(path, "broken symbolic link")
            return None
        return self._entry(path, root)

    def _wanted(self, rel: str) -> bool:
        if self.include is not None and not self.include.match_file(rel):
            return False
        return not self._excluded(rel)

    def _excluded(self, rel: str) -> bool:
        return self.exclude is not None and self.exclude.match_file(rel)

    def _entry(self, path: Path, root: Path) -> FileEntry | None:
        try:
            resolved = path.resolve()
            st = resolved.stat()
        except OSError as exc:
            self._fail(path, f"cannot stat file: {exc.strerror or exc}")
            return None
        if not stat.S_ISREG(st.st_mode):
            return None  # sockets, FIFOs, devices: never open them
        if resolved in self.seen_files:
            return None
        self.seen_files.add(resolved)
        if st.st_size > self.max_bytes:
            self._fail(
                resolved,
                f"file is {st.st_size:,} bytes, over the limit of {self.max_bytes:,} bytes; "
                "raise max_bytes to index it",
            )
            return None
        return FileEntry(path=resolved, root=root, size=st.st_size, mtime=st.st_mtime)


__all__ = ["JUNK_DIRS", "FileEntry", "SkippedPath", "Walk", "walk"]
