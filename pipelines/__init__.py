"""The three pipelines and their compilation. Compiled YAML is generated, never hand-edited.

Each pipeline is built when it is first asked for (`pipeline(name)`, or the dicts below): a local run
needs only its own."""

from __future__ import annotations

import importlib
import sys
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
    _cheap_container_spec_check()
    return getattr(importlib.import_module(f"pipelines.{name}"), name)


def _cheap_container_spec_check() -> None:
    """kfp's PipelineTask._ensure_container_spec_exists, run by every set_cpu_limit/set_memory_request/...,
    calls inspect.stack() only to name its caller in an error message; inspect.stack() reads the source of
    every frame on the stack, so building a pipeline spent about a second in it (0.9 s of 1.0 s for the
    demo pipeline). The same check and message, naming the caller from its frame."""
    from kfp.dsl import pipeline_task

    task_class = pipeline_task.PipelineTask
    if getattr(task_class._ensure_container_spec_exists, "_searchrec", False):
        return

    def _ensure_container_spec_exists(self) -> None:
        if self.container_spec is None:
            caller_method_name = sys._getframe(1).f_code.co_name
            raise ValueError(
                f"{caller_method_name} can only be used on single-step components, not pipelines used as "
                "components, or special components like importers."
            )

    _ensure_container_spec_exists._searchrec = True
    task_class._ensure_container_spec_exists = _ensure_container_spec_exists


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
