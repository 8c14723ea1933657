"""Stage functions that read like their docstring: no function body in shared/searchrec longer than
MAX_BODY_LINES (signature and docstring not counted). A longer one is a sign that a step wants a name."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "shared" / "searchrec"
MAX_BODY_LINES = 60


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # the docstring
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_no_function_body_is_longer_than_the_limit():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and _body_lines(node) > MAX_BODY_LINES
            ):
                long.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({_body_lines(node)} lines)"
                )
    assert not long, "functions to split: " + "; ".join(long)
