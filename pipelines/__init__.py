"""The three pipelines and their compilation. Compiled YAML is generated, never hand-edited."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from pipelines.demo import demo
from pipelines.preflight import preflight
from pipelines.recommend import recommend
from pipelines.training import training

PIPELINES = {"training": training, "recommend": recommend, "demo": demo}
# Not a data pipeline: the checks a new cluster runs first (`searchrec preflight`), compiled beside them.
CHECK_PIPELINES = {"preflight": preflight}
ALL_PIPELINES = {**PIPELINES, **CHECK_PIPELINES}


def compile_pipeline(name: str, out_file: Path) -> Path:
    if name not in ALL_PIPELINES:
        from searchrec.errors import SearchrecError

        raise SearchrecError(f"unknown pipeline {name!r}; expected one of {', '.join(ALL_PIPELINES)}")
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(ALL_PIPELINES[name], package_path=str(out_file))
    return out_file


def compile_all(out_dir: Path) -> list[Path]:
    return [compile_pipeline(name, Path(out_dir) / f"{name}.yaml") for name in PIPELINES]
