"""The three pipelines and their compilation. Compiled YAML is generated, never hand-edited.

Each pipeline is built when it is first asked for (`pipeline(name)`, or the dicts below): building one
runs kfp's DSL over all its components, about a second each, and a local run needs only its own."""

from __future__ import annotations

import importlib
from pathlib import Path

DATA_PIPELINES = ("training", "recommend", "demo")
# Not a data pipeline: the checks a new cluster runs first (`searchrec preflight`), compiled beside them.
CHECK_PIPELINE_NAMES = ("preflight",)
NAMES = (*DATA_PIPELINES, *CHECK_PIPELINE_NAMES)


def pipeline(name: str):
    """The pipeline function `name` (module pipelines.<name>), built on first use."""
    if name not in NAMES:
        from searchrec.errors import SearchrecError

        raise SearchrecError(f"unknown pipeline {name!r}; expected one of {', '.join(NAMES)}")
    return getattr(importlib.import_module(f"pipelines.{name}"), name)


def __getattr__(attribute: str) -> dict:
    """PIPELINES (the data pipelines), CHECK_PIPELINES and ALL_PIPELINES: name -> pipeline function."""
    names = {"PIPELINES": DATA_PIPELINES, "CHECK_PIPELINES": CHECK_PIPELINE_NAMES, "ALL_PIPELINES": NAMES}
    if attribute not in names:
        raise AttributeError(f"module 'pipelines' has no attribute {attribute!r}")
    return {name: pipeline(name) for name in names[attribute]}


def compile_pipeline(name: str, out_file: Path) -> Path:
    from kfp import compiler

    function = pipeline(name)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(function, package_path=str(out_file))
    return out_file


def compile_all(out_dir: Path) -> list[Path]:
    return [compile_pipeline(name, Path(out_dir) / f"{name}.yaml") for name in DATA_PIPELINES]
