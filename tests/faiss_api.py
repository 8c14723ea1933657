"""The public names of a faiss package, read from its Python sources (no import, so any build can be read).

`python -m tests.faiss_api <unpacked wheel>/faiss <wheel file name> <sha256>` writes the snapshot that
tests/test_images.py checks the stages' faiss calls against (tests/data/faiss-gpu-<version>.names): the
GPU build cannot be installed here, its wheel's sources can be read once.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def _statements(body: list[ast.stmt]):
    """Module-level statements, also inside if/try blocks (faiss's loader imports inside try)."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, field, None)
            if isinstance(inner, list) and not isinstance(node, ast.FunctionDef | ast.ClassDef):
                yield from _statements([n for n in inner if isinstance(n, ast.stmt | ast.excepthandler)])


def _body(node) -> list:
    return node.body if isinstance(node, ast.ExceptHandler) else [node]


def module_names(package: Path, module: str = "__init__", seen: set[str] | None = None) -> set[str]:
    """Names a module of `package` defines or re-exports (star imports of sibling modules followed)."""
    seen = set() if seen is None else seen
    path = Path(package) / f"{module.replace('.', '/')}.py"
    if module in seen or not path.is_file():
        return set()
    seen.add(module)
    names: set[str] = set()
    for node in _statements(ast.parse(path.read_text(encoding="utf-8")).body):
        for stmt in _body(node):
            if isinstance(stmt, ast.FunctionDef | ast.ClassDef):
                names.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                names |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
            elif isinstance(stmt, ast.ImportFrom):
                source = (stmt.module or "").removeprefix("faiss.") if stmt.level or stmt.module else ""
                if not stmt.level and not (stmt.module or "").startswith("faiss"):
                    continue
                if any(a.name == "*" for a in stmt.names):
                    names |= {n for n in module_names(package, source, seen) if not n.startswith("_")}
                else:
                    names |= {a.asname or a.name for a in stmt.names}
            elif isinstance(stmt, ast.Import):
                names |= {
                    (a.asname or a.name).split(".")[0] for a in stmt.names if a.name.startswith("faiss")
                }
    return names


def main(argv: list[str]) -> None:
    package, wheel, sha256 = Path(argv[1]), argv[2], argv[3]
    print(f"# public names of faiss in {wheel} (sha256 {sha256}), from its Python sources")
    for name in sorted(module_names(package)):
        print(name)


if __name__ == "__main__":
    main(sys.argv)
