"""A password given where it does not belong is refused at every entry point before anything runs, with one
line naming the parameter; the secret value never reaches stdout, stderr or any file a run leaves (and
neither does PGPASSWORD's value, also when a good run uses it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from searchrec import config
from searchrec.errors import SearchrecError
from searchrec.secrets import carries_password, refuse_passwords
from tests.tiny_world import run_sources

SECRET = "S3cr3tVal"
PG_SECRET = "PgEnvS3cretZ9"  # PGPASSWORD's value in these runs (the test database trusts any password)
BAD_URI = f"postgresql://u:{SECRET}@127.0.0.1/test"
REPO = Path(__file__).resolve().parents[1]


def test_passwords_are_found_in_every_spelling():
    for value in (
        BAD_URI,
        f"postgresql://:{SECRET}@host/db",
        f"postgresql://host/db?sslmode=require&password={SECRET}",
        f"postgresql://host/db?PASSWORD={SECRET}",
        f"host=gp dbname=dwh password={SECRET}",
        f"s3://key:{SECRET}@bucket/prefix",
        [f"warehouse_uri={BAD_URI}"],
        {"uri": BAD_URI},
    ):
        assert carries_password(value), value
    for value in (
        "postgresql://u@127.0.0.1:5432/test?options=-csearch_path%3Dx",
        "duckdb:///data/demo/warehouse.duckdb",
        "s3://bucket/a:b@c/d",
        "gs://bucket/dt=2026-10-14",
        "projects/p/secrets/gp-password/versions/1",
        "",
        3,
        None,
        ["model_uri=models"],
    ):
        assert not carries_password(value), value


def test_the_refusal_names_the_parameter_never_the_value():
    with pytest.raises(SearchrecError) as err:
        refuse_passwords({"embeddings_uri": "gs://b/e", "warehouse_uri": BAD_URI})
    message = str(err.value)
    assert message.startswith("parameter warehouse_uri carries a password; leave it out")
    assert SECRET not in message and "\n" not in message
    with pytest.raises(SearchrecError, match=r"^option --param warehouse_uri carries a password") as err:
        refuse_passwords({"--param": ["top_k=5", f"warehouse_uri={BAD_URI}"]}, what="option")
    assert SECRET not in str(err.value)
    refuse_passwords({"warehouse_uri": "postgresql://h/db", "top_k": 5})  # nothing to refuse


def test_a_stage_refuses_before_its_body_runs(tmp_path, monkeypatch, capsys):
    from searchrec.runtime import ERRORS_FILE_ENV, stage

    monkeypatch.setenv(ERRORS_FILE_ENV, str(tmp_path / "errors.txt"))
    ran = []
    with pytest.raises(SystemExit) as exit_:
        with stage("extract_training_events", warehouse_uri=BAD_URI):
            ran.append(True)
    assert ran == []
    assert str(exit_.value) == (
        "searchrec extract_training_events failed: parameter warehouse_uri carries a password; leave it out: "
        "the warehouse login comes from PGUSER / PGPASSWORD (a Kubernetes Secret on Kubeflow) or from "
        "warehouse_secret (Secret Manager on Vertex AI)"
    )
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err + (tmp_path / "errors.txt").read_text()


# --- every command, as a user runs it ---------------------------------------------------------------


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PGPASSWORD": PG_SECRET}
    return subprocess.run(
        [sys.executable, "-m", "searchrec.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _leaks(result: subprocess.CompletedProcess, folder: Path) -> list[str]:
    """Where either secret shows up: the command's output and every file under ``folder``."""
    found = [
        f"<{name}>"
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr))
        if SECRET in text or PG_SECRET in text
    ]
    for path in sorted(folder.rglob("*")) if folder.exists() else []:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if SECRET.encode() in data or PG_SECRET.encode() in data:
                found.append(str(path))
    return found


CLUSTER = ["--host", "http://127.0.0.1:9", "--tag", "test"]  # nothing listens there: no request is made


@pytest.mark.parametrize(
    "command, option",
    [
        (["run", "--pipeline", "demo", "--warehouse-uri", BAD_URI], "--warehouse-uri"),
        (
            ["run", "--pipeline", "recommend", "--model-uri", "models", "--warehouse-uri", BAD_URI],
            "--warehouse-uri",
        ),
        (["demo", "--warehouse-uri", f"postgresql://127.0.0.1/test?password={SECRET}"], "--warehouse-uri"),
        (["run", "--pipeline", "demo", "--output-uri", f"s3://k:{SECRET}@recs/out"], "--output-uri"),
        (["preflight", "--local", "--allow-no-gpu", "--warehouse-uri", BAD_URI], "--warehouse-uri"),
        (["preflight", *CLUSTER, "--warehouse-uri", BAD_URI], "--warehouse-uri"),
        (["preflight", *CLUSTER, "--param", f"warehouse_uri={BAD_URI}"], "--param warehouse_uri"),
        (
            [
                "submit",
                "--pipeline",
                "training",
                *CLUSTER,
                "--start-date",
                "2026-10-01",
                "--end-date",
                "2026-10-07",
                "--param",
                f"warehouse_uri={BAD_URI}",
            ],
            "--param warehouse_uri",
        ),
        (
            [
                "schedule",
                "--pipeline",
                "recommend",
                *CLUSTER,
                "--cron",
                "0 3 * * *",
                "--start-date",
                "2026-10-15",
                "--end-date",
                "2026-10-15",
                "--param",
                "model_uri=gs://m/r",
                "--param",
                f"warehouse_uri={BAD_URI}",
            ],
            "--param warehouse_uri",
        ),
        (
            ["backtest", "--recommendations", "x", "--warehouse-uri", BAD_URI, "--start-date", "2026-10-11"],
            "--warehouse-uri",
        ),
    ],
    ids=[
        "run",
        "run-recommend",
        "demo",
        "run-output",
        "preflight-local",
        "preflight",
        "preflight-param",
        "submit",
        "schedule",
        "backtest",
    ],
)
def test_every_command_refuses_a_password_before_anything_runs(tiny_demo, tmp_path, command, option):
    runs = tmp_path / "runs"
    args = [*command]
    if command[0] in ("run", "demo") or "--local" in command:
        args += [*run_sources(tiny_demo, warehouse=False), "--runs-dir", str(runs)]
    result = _cli(args, cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"searchrec: error: option {option} carries a password"), (
        result.stderr
    )
    assert _leaks(result, tmp_path) == []
    assert not runs.exists()  # refused before a run folder (or a kfp.local dump of the inputs) existed


def test_a_component_run_by_other_means_refuses_too(tmp_path):
    """A pipeline not started by `searchrec` reaches the stage itself: it refuses with its own line (what
    the runner prints of its inputs is the runner's; searchrec writes the secret nowhere)."""
    script = f"""
import os, sys
from kfp import local
from components.extract import extract_snapshot
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root={str(tmp_path / "root")!r})
os.environ[{config.ERRORS_FILE_ENV!r}] = {str(tmp_path / "errors.txt")!r}
try:
    extract_snapshot(embeddings_uri="s3://key:{SECRET}@bucket/e", date="2026-10-14")
except RuntimeError:
    sys.exit(3)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 3, result.stderr[-3000:]
    [line] = (tmp_path / "errors.txt").read_text().splitlines()
    assert line.startswith("searchrec extract_snapshot failed: parameter embeddings_uri carries a password;")
    leaked = [p for p in (tmp_path / "root").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []


@pytest.mark.slow
def test_a_good_run_with_pgpassword_leaves_it_nowhere(tiny_demo, tmp_path, pg_dsn, pg_load):
    """PGPASSWORD is the right place for the warehouse password: a local preflight against the real
    PostgreSQL with it set passes, and its value is in no output and no file of the run."""
    pg_load(
        pd.DataFrame({"user_id": [1], "query_ts": [pd.Timestamp("2026-10-01")], "query_text": ["x"]}),
        "search_queries",
    )
    pg_load(pd.DataFrame({"user_id": [1], "order_ts": [pd.Timestamp("2026-10-01")], "nm_id": [7]}), "orders")
    runs = tmp_path / "runs"
    args = ["preflight", "--local", "--allow-no-gpu", "--date", "2026-10-14", "--warehouse-uri", pg_dsn]
    result = _cli([*args, *run_sources(tiny_demo, warehouse=False), "--runs-dir", str(runs)], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "PASS extract warehouse" in result.stdout
    assert any(runs.rglob("executor_output.json"))  # the run left its files: they were searched
    assert _leaks(result, tmp_path) == []
