"""The runtime library (what the stage images run) never imports the driver side (compile, submit, local
runs, CLI, demo data, pipelines): an image holds only its stage's extras, and a circle between the two
sides is how a change to submission breaks a training task. Read from the source, every import statement
(module level and inside functions alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shared" / "searchrec"
DRIVER = {
    "searchrec.cli",
    "searchrec.cli_options",
    "searchrec.submit",
    "searchrec.localrun",
    "searchrec.runlog",
    "searchrec.runcheck",
    "searchrec.runs",
    "searchrec.demo_data",
    "searchrec.warmstart",
    "pipelines",
}


def _module_name(path: Path) -> str:
    rel = (
        path.relative_to(ROOT / "shared") if path.is_relative_to(ROOT / "shared") else path.relative_to(ROOT)
    )
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_driver(name: str) -> bool:
    return any(name == d or name.startswith(d + ".") for d in DRIVER)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


RUNTIME = sorted(
    p
    for p in [*PACKAGE.rglob("*.py"), *(ROOT / "components").glob("*.py")]
    if not _is_driver(_module_name(p))
)


def test_the_sides_are_what_this_test_thinks():
    names = {_module_name(p) for p in RUNTIME}
    assert {
        "searchrec.config",
        "searchrec.artifacts.folder",
        "searchrec.stages.train",
        "components.infer",
    } <= names
    assert not names & {"searchrec.submit", "searchrec.cli", "searchrec.demo_data"}


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: _module_name(p))
def test_runtime_module_never_imports_the_driver_side(path: Path):
    wrong = sorted(name for name in _imports(path) if _is_driver(name))
    assert not wrong, f"{_module_name(path)} imports {', '.join(wrong)}"


def test_pipelines_take_nothing_from_submit():
    for path in (ROOT / "pipelines").glob("*.py"):
        assert not [n for n in _imports(path) if n.startswith("searchrec.submit")], path.name
