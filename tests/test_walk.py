"""indexer.walk on real directory trees made in tmp_path."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from indexer.walk import FileEntry, SkippedPath, walk


def touch(root: Path, rel: str, content: str = "x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for rel in [
        "README.md",
        "b.txt",
        "a/z.py",
        "a/notes.md",
        "a/deep/er/guide.rst",
        "docs/intro.md",
        "docs/drafts/wip.md",
        "docs/api/ref.html",
        "data/table.csv",
        "image.png",  # unsupported suffix
        "archive.tar.gz",  # unsupported suffix
        ".hidden.md",  # hidden file
        ".secret/inside.md",  # hidden dir
        "node_modules/pkg/index.js",  # junk dir
        "__pycache__/mod.py",
        ".git/HEAD.txt",
        ".venv/lib/site.py",
        "UPPER.MD",  # suffix match is case-insensitive
    ]:
        touch(root, rel)
    return root


def rels(entries) -> list[str]:
    return [entry.relative_path for entry in entries]


def test_walks_sorted_and_skips_hidden_junk_and_unsupported(tree: Path) -> None:
    assert rels(walk([tree])) == [
        "README.md",
        "UPPER.MD",
        "a/deep/er/guide.rst",
        "a/notes.md",
        "a/z.py",
        "b.txt",
        "data/table.csv",
        "docs/api/ref.html",
        "docs/drafts/wip.md",
        "docs/intro.md",
    ]


def test_file_entry_fields(tree: Path) -> None:
    entries = {e.relative_path: e for e in walk([tree])}
    entry = entries["a/notes.md"]
    path = tree / "a" / "notes.md"
    assert isinstance(entry, FileEntry)
    assert entry.path == path.resolve() and entry.path.is_absolute()
    assert entry.root == tree.resolve()
    assert entry.size == path.stat().st_size == 1
    assert entry.mtime == path.stat().st_mtime


def test_walk_order_does_not_depend_on_creation_order(tree: Path, tmp_path: Path) -> None:
    # The same files created in the reverse order (so listed in another order by the file system)
    # come out in the same sorted order.
    files = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    other = tmp_path / "reversed"
    for rel in reversed(files):
        touch(other, rel)
    assert rels(walk([other])) == rels(walk([tree]))
    assert rels(walk([tree])) == sorted(rels(walk([tree])))


def test_include_patterns_match_at_any_depth_and_anchored(tree: Path) -> None:
    # Patterns are case-sensitive, as in git: "*.md" does not match UPPER.MD.
    assert rels(walk([tree], include=["*.md"])) == [
        "README.md", "a/notes.md", "docs/drafts/wip.md", "docs/intro.md",
    ]  # fmt: skip
    assert rels(walk([tree], include=["docs/**/*.md"])) == ["docs/drafts/wip.md", "docs/intro.md"]
    assert rels(walk([tree], include=["/*.txt", "a/**"])) == [
        "a/deep/er/guide.rst", "a/notes.md", "a/z.py", "b.txt",
    ]  # fmt: skip


def test_exclude_patterns_and_directory_pruning(tree: Path) -> None:
    assert rels(walk([tree], exclude=["drafts/", "*.py", "a/deep/**"])) == [
        "README.md",
        "UPPER.MD",
        "a/notes.md",
        "b.txt",
        "data/table.csv",
        "docs/api/ref.html",
        "docs/intro.md",
    ]


def test_include_and_exclude_together(tree: Path) -> None:
    assert rels(walk([tree], include=["docs/"], exclude=["**/drafts/**"])) == [
        "docs/api/ref.html",
        "docs/intro.md",
    ]


def test_single_file_root(tree: Path) -> None:
    target = tree / "a" / "notes.md"
    (entry,) = walk([target])
    assert entry.path == target.resolve()
    assert entry.root == target.resolve()
    assert entry.relative_path == "notes.md"


def test_hidden_single_file_root_is_taken_but_unsupported_one_is_reported(tree: Path) -> None:
    assert rels(walk([tree / ".hidden.md"])) == [".hidden.md"]
    walker = walk([tree / "image.png"])
    assert list(walker) == []
    assert [f.path.name for f in walker.failures] == ["image.png"]
    assert "unsupported" in walker.failures[0].reason


def test_missing_root_raises_before_iteration(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=r"nope.*does not exist"):
        walk([tmp_path, missing])  # raised by the call itself, not lazily


def test_overlapping_roots_yield_each_file_once(tree: Path) -> None:
    entries = list(walk([tree / "docs", tree, tree / "docs" / "intro.md"]))
    paths = [e.path for e in entries]
    assert len(paths) == len(set(paths)) == 10
    assert entries[0].root == (tree / "docs").resolve()


def test_symlink_loop_terminates_and_linked_files_are_not_duplicated(tmp_path: Path) -> None:
    root = tmp_path / "r"
    touch(root, "sub/file.md")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "alias.md").symlink_to(root / "sub" / "file.md")
    outside = touch(tmp_path, "outside/ext.txt")
    (root / "ext").symlink_to(outside.parent, target_is_directory=True)
    entries = list(walk([root]))
    assert sorted(e.path.name for e in entries) == ["ext.txt", "file.md"]
    assert len({e.path for e in entries}) == len(entries)


def test_broken_symlink_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "r"
    touch(root, "ok.md")
    (root / "dangling.md").symlink_to(root / "missing.md")
    walker = walk([root])
    assert rels(walker) == ["ok.md"]
    assert walker.failures == [SkippedPath(root.resolve() / "dangling.md", "broken symbolic link")]


def test_files_over_max_bytes_are_reported_not_yielded(tmp_path: Path) -> None:
    root = tmp_path / "r"
    touch(root, "small.txt", "x" * 10)
    touch(root, "big.txt", "x" * 5000)
    walker = walk([root], max_bytes=1000)
    assert rels(walker) == ["small.txt"]
    ((path, reason),) = walker.failures
    assert path.name == "big.txt" and "5,000 bytes" in reason


def test_unreadable_directory_is_logged_reported_and_skipped(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    root = tmp_path / "r"
    touch(root, "a/fine.md")
    locked = root / "b"
    touch(root, "b/hidden-from-us.md")
    touch(root, "c/also-fine.md")
    if os.geteuid() != 0:
        locked.chmod(0)
    else:  # root ignores permission bits: make scandir fail the way it would for a user
        real_scandir = os.scandir

        def scandir(path):
            if Path(path) == locked.resolve():
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        with caplog.at_level(logging.WARNING, logger="indexer.walk"):
            walker = walk([root])
            found = rels(walker)
    finally:
        locked.chmod(0o755)
    assert found == ["a/fine.md", "c/also-fine.md"]
    assert [f.path for f in walker.failures] == [locked.resolve()]
    assert "unreadable directory" in walker.failures[0].reason
    assert "unreadable directory" in caplog.text


def test_string_roots_and_patterns_are_accepted(tree: Path) -> None:
    assert rels(walk([str(tree)], include="*.rst")) == ["a/deep/er/guide.rst"]
