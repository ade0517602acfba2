"""The packages import one way: embedder <- indexer <- evaluation <- finetune <- app (README, Architecture)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OURS = ("embedder", "indexer", "evaluation", "finetune", "app")
#: What each package may import of ours (besides itself).
ALLOWED = {
    "embedder": set(),
    "indexer": {"embedder"},
    "evaluation": {"embedder", "indexer"},
    "finetune": {"embedder", "indexer", "evaluation"},
    "app": {"embedder", "indexer", "finetune", "evaluation"},
}


def imported_packages(path: Path) -> set[str]:
    """Our top-level packages that ``path`` imports (absolute imports; relative ones stay inside)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in OURS)
    return found


@pytest.mark.parametrize("package", OURS)
def test_package_imports_only_the_layers_below(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no sources under {package}/"
    wrong = {str(f.relative_to(REPO)): sorted(imported_packages(f) - ALLOWED[package] - {package})
             for f in files}
    assert not {f: w for f, w in wrong.items() if w}, f"{package} imports a layer above it"


def test_the_check_sees_imports():
    """The scanner itself: an absolute import of ours is found, a relative one is not."""
    assert imported_packages(REPO / "app" / "service.py") >= {"embedder", "indexer"}
    assert "indexer" not in imported_packages(REPO / "indexer" / "pipeline.py")
