"""Preflight checks: what a platform engineer runs first on a new cluster (`searchrec preflight`).

One task per stage image, each with that stage's real settings, runs the checks of that stage and
reports each in one line (``PASS name: detail`` / ``FAIL name: detail``); a Markdown artifact lists
them. A failed check fails its task with its own line. The checks:

- image: the stage module imports, and extract/clean load no torch, transformers or faiss;
- warehouse: it answers with the task's credentials, and both source tables have the contract's columns;
- embeddings: a ``dt=`` partition within ``snapshot_max_days`` of the given date;
- encoder: it loads through the stage's path and its publishing manifest verifies;
- gpu: torch and faiss see a GPU (on GPU tasks; "no GPU" passes only where explicitly allowed);
- pipeline root: an artifact written by one task (through ``artifacts.folder.publishing``) reads back
  complete and unchanged in the next.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

HEAVY_MODULES = ("torch", "transformers", "faiss")
CPU_ONLY = ("extract", "clean")
CONTRACT_COLUMNS = {
    "search_queries": ("user_id", "query_ts", "query_text"),
    "orders": ("user_id", "order_ts", "nm_id"),
}
PROBE_KIND = "preflight probe"
PROBE_FILE = "probe.json"


@dataclass(frozen=True)
class Check:
    stage: str
    name: str
    ok: bool
    detail: str

    @property
    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.stage} {self.name}: {self.detail}"


def run_check(stage: str, name: str, check: Callable[[], str]) -> Check:
    """Run one check: its detail line, or the SearchrecError / exception's first line as a failure."""
    try:
        result = Check(stage, name, True, check())
    except SearchrecError as error:
        result = Check(stage, name, False, str(error))
    except Exception as error:  # an unexpected failure is still one line, not a traceback
        text = str(error).strip().splitlines()
        result = Check(stage, name, False, f"{type(error).__name__}: {text[0] if text else ''}")
    (log.info if result.ok else log.error)("%s", result.line)
    return result


# --- the checks -----------------------------------------------------------------------------------


def check_image(stage: str) -> str:
    """The stage module imports in a fresh interpreter; CPU stages load nothing heavier than they need."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module('searchrec.stages.{stage}')\n"
        f"print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SearchrecError(f"searchrec.stages.{stage} does not import: {last}")
    heavy = json.loads(result.stdout.strip().splitlines()[-1])
    if stage in CPU_ONLY and heavy:
        raise SearchrecError(f"searchrec.stages.{stage} loads {', '.join(heavy)} (a CPU image must not)")
    loads = f" (loads {', '.join(heavy)})" if heavy else " (no torch, transformers or faiss)"
    return f"searchrec.stages.{stage} imports{loads}"


def check_warehouse(warehouse_uri: str, warehouse_secret: str = "") -> str:
    """Connect with the task's credentials; both source tables have the contract's columns."""
    from searchrec import warehouse

    if warehouse_secret:
        from searchrec.secrets import load_warehouse_login

        load_warehouse_login(warehouse_secret)
    found = {}
    with warehouse.connection(warehouse_uri, attempts=1) as conn:
        cursor = conn.cursor()
        for table, wanted in CONTRACT_COLUMNS.items():
            try:
                cursor.execute(f"SELECT * FROM {table} LIMIT 0")  # noqa: S608 (fixed names)
            except Exception as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise SearchrecError(f"table {table}: {first}") from None
            columns = [d[0].lower() for d in cursor.description]
            missing = [c for c in wanted if c not in columns]
            if missing:
                raise SearchrecError(f"table {table} lacks column(s) {', '.join(missing)}")
            found[table] = len(columns)
    tables = ", ".join(f"{t} ({n} columns)" for t, n in found.items())
    return f"{warehouse.display_uri(warehouse_uri)} answers; {tables} have the contract's columns"


def check_embeddings(embeddings_uri: str, date: str, max_days: int) -> str:
    """A dt= partition within max_days of date (or the pinned partition exists)."""
    from searchrec.dates import parse_date
    from searchrec.stages.extract import locate_snapshot

    wanted = parse_date(date, "date")
    nearest, _, _ = locate_snapshot(str(embeddings_uri), wanted, int(max_days))
    days = abs((nearest - wanted).days)
    return f"dt={nearest} under {embeddings_uri} is {days} day(s) from {wanted} (limit {max_days})"


def check_encoder(encoder: str, require_manifest: bool) -> str:
    """The encoder loads through the stage's path; its manifest verifies (required unless told otherwise)."""
    from searchrec.encoder import EncoderSpec, load_encoder, verify_manifest

    loaded = load_encoder(EncoderSpec(name_or_path=encoder), device="cpu")
    manifest = (
        verify_manifest(loaded.local_dir, encoder, required=require_manifest) if loaded.local_dir else None
    )
    if manifest is None and require_manifest:
        raise SearchrecError(f"encoder {encoder} is not a published folder (searchrec encoder publish)")
    verified = f"manifest verified ({len(manifest['files'])} files)" if manifest else "no manifest (allowed)"
    return f"{encoder} loads: {type(loaded.model).__name__}, dim {loaded.dim}, {loaded.pooling} pooling; {verified}"


def check_gpu(allow_missing: bool) -> str:
    """torch and faiss both see a GPU; without one the check passes only when `allow_missing`."""
    import faiss
    import torch

    torch_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    faiss_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if torch_gpus and faiss_gpus:
        return f"torch sees {torch_gpus} GPU(s) ({torch.cuda.get_device_name(0)}), faiss sees {faiss_gpus}"
    seen = f"torch sees {torch_gpus} GPU(s), faiss sees {faiss_gpus}"
    if allow_missing:
        return f"no GPU ({seen}); allowed by allow_no_gpu"
    raise SearchrecError(f"no GPU: {seen}")


def write_probe(out: Path) -> str:
    """Publish a small artifact under the pipeline root, as every stage publishes its output."""
    from searchrec.artifacts import folder

    payload = {"written_at": time.time(), "by": "preflight"}
    with folder.publishing(out, PROBE_KIND) as path:
        folder.write_json(path / PROBE_FILE, payload)
    folder.require_complete(out, PROBE_KIND)
    return f"wrote and read back {out}"


def read_probe(path: Path) -> str:
    """The probe written by the previous task arrives complete and unchanged."""
    from searchrec.artifacts import folder

    folder.require_complete(path, PROBE_KIND)
    data = folder.read_json(Path(path) / PROBE_FILE)
    if data.get("by") != "preflight":
        raise SearchrecError(f"the {PROBE_KIND} {path} does not hold what was written")
    return f"the artifact written by the extract task reads back complete from {path}"


# --- reporting ------------------------------------------------------------------------------------


def report_markdown(checks: list[Check], title: str) -> str:
    lines = [f"# {title}", "", "| stage | check | result | detail |", "| --- | --- | --- | --- |"]
    for c in checks:
        detail = c.detail.replace("|", "\\|")
        lines.append(f"| {c.stage} | {c.name} | {'PASS' if c.ok else '**FAIL**'} | {detail} |")
    failed = sum(not c.ok for c in checks)
    lines += ["", f"{len(checks) - failed} of {len(checks)} checks passed."]
    return "\n".join(lines) + "\n"


def finish(checks: list[Check], report: Path, title: str) -> None:
    """Write the Markdown report (a file artifact); one line per check on stdout; fail on the first FAIL."""
    from searchrec.artifacts.folder import write_atomic

    text = report_markdown(checks, title)
    write_atomic(Path(report), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    for check in checks:
        print(check.line, flush=True)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise SearchrecError(failed[0].line + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""))


def parse_report(text: str) -> list[tuple[str, str, str, str]]:
    """(stage, check, result, detail) rows of a report_markdown() table."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 4 and cells[2].strip("*") in ("PASS", "FAIL"):
            rows.append((cells[0], cells[1], cells[2].strip("*"), cells[3]))
    return rows


# --- the checks of each stage image ---------------------------------------------------------------


def extract_checks(
    warehouse_uri: str, warehouse_secret: str, embeddings_uri: str, date: str, max_days: int, probe: Path
) -> list[Check]:
    return [
        run_check("extract", "image", lambda: check_image("extract")),
        run_check("extract", "warehouse", lambda: check_warehouse(warehouse_uri, warehouse_secret)),
        run_check("extract", "embeddings", lambda: check_embeddings(embeddings_uri, date, max_days)),
        run_check("extract", "pipeline root write", lambda: write_probe(probe)),
    ]


def clean_checks(probe: Path) -> list[Check]:
    return [
        run_check("clean", "image", lambda: check_image("clean")),
        run_check("clean", "pipeline root read", lambda: read_probe(probe)),
    ]


def gpu_stage_checks(
    stage: str, allow_no_gpu: bool, encoder: str | None = None, require_manifest: bool = True
) -> list[Check]:
    checks = [
        run_check(stage, "image", lambda: check_image(stage)),
        run_check(stage, "gpu", lambda: check_gpu(allow_no_gpu)),
    ]
    if encoder is not None:
        checks.append(run_check(stage, "encoder", lambda: check_encoder(encoder, require_manifest)))
    return checks


def summarize(reports: list[Path], out: Path) -> list[tuple[str, str, str, str]]:
    """One Markdown table of every check of every task's report; returns its rows."""
    from searchrec.artifacts.folder import write_atomic

    rows = [row for report in reports for row in parse_report(Path(report).read_text(encoding="utf-8"))]
    checks = [
        Check(stage, name, result == "PASS", detail.replace("\\|", "|"))
        for stage, name, result, detail in rows
    ]
    text = report_markdown(checks, "searchrec preflight")
    write_atomic(Path(out), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return rows
