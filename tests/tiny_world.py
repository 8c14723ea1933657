"""The `searchrec run` options that point at a generated demo world (conftest's `tiny_demo` folder, or
any folder the generator wrote): its DuckDB warehouse, its snapshots and its stand-in encoder."""

from __future__ import annotations

from pathlib import Path


def run_sources(data: Path, embeddings: Path | None = None, *, warehouse: bool = True) -> list[str]:
    """--warehouse-uri (unless `warehouse` is False), --embeddings-uri (or `embeddings`) and --encoder."""
    options = ["--warehouse-uri", f"duckdb:///{data / 'warehouse.duckdb'}"] if warehouse else []
    return [
        *options,
        "--embeddings-uri",
        str(embeddings or data / "embeddings"),
        "--encoder",
        str(data / "encoder"),
    ]
