"""Fixtures for real servers on loopback: PostgreSQL, moto's S3 server and the GCS emulator.

- ``pg_dsn``: ``postgresql://<user>@127.0.0.1:5432/test?options=-csearch_path%3D<schema>``, a fresh
  schema per test (dropped afterwards). Usable as a warehouse URI and by ``psycopg2.connect``.
- ``pg_load``: ``pg_load(df, table)`` creates the warehouse tables (sql/ddl.sql) in that schema and
  loads a pandas DataFrame with COPY.
- ``s3_endpoint``: URL of a session-wide moto S3 server; AWS_* variables point at it for the test
  and its state is reset before each test.
- ``vertex``: the loopback Vertex AI stand-in with aiplatform pointed at it (pipeline root bucket ready).
- ``backend``: parametrized over local, S3 and GCS: a function giving a fresh folder URI on each.
- ``gcs_endpoint``: URL of a session-wide gcp-storage-emulator; STORAGE_EMULATOR_HOST points at it
  for the test and it is wiped before each test.

The servers are real; when PostgreSQL is not reachable the tests that need it are skipped, unless
SEARCHREC_REQUIRE_SERVICES=1 (CI), which makes them fail.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

# A test run leaves no warm task process behind (searchrec.warmstart); the tests of kept ones set it.
os.environ["SEARCHREC_WARM_KEEP_S"] = "0"  # config.WARM_KEEP_ENV (asserted in test_warmstart)

PG_HOST = os.environ.get("SEARCHREC_TEST_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("SEARCHREC_TEST_PGPORT", "5432"))
PG_DB = os.environ.get("SEARCHREC_TEST_PGDATABASE", "test")
DDL = Path(__file__).resolve().parents[1] / "sql" / "ddl.sql"


def _require_services() -> bool:
    return os.environ.get("SEARCHREC_REQUIRE_SERVICES", "") == "1"


def _unavailable(reason: str) -> None:
    if _require_services():
        pytest.fail(f"{reason} (SEARCHREC_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- PostgreSQL -----------------------------------------------------------------------------------


def _pg_admin_dsn() -> str | None:
    """A working DSN for the test server (trust auth), trying PGUSER, root and postgres."""
    import psycopg2

    users = [u for u in (os.environ.get("PGUSER"), "root", "postgres") if u]
    for user in dict.fromkeys(users):
        dsn = f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{PG_DB}"
        try:
            psycopg2.connect(dsn, connect_timeout=3).close()
            return dsn
        except psycopg2.OperationalError:
            continue
    return None


@pytest.fixture(scope="session")
def _pg_admin() -> str:
    dsn = _pg_admin_dsn()
    if dsn is None:
        _unavailable(f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT} database {PG_DB}")
    return dsn


@pytest.fixture
def pg_dsn(_pg_admin: str) -> Iterator[str]:
    """DSN (a warehouse URI) whose search_path is a fresh schema, dropped after the test."""
    import psycopg2

    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(_pg_admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{_pg_admin}?options=-csearch_path%3D{schema}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def copy_dataframe(dsn: str, df: pd.DataFrame, table: str, *, create: bool = True) -> int:
    """Load ``df`` into ``table`` with COPY ... FROM STDIN (CSV); return the rows loaded.

    Strings are quoted and NULLs unquoted, so NULL and '' stay apart. ``create`` runs sql/ddl.sql first.
    """
    import psycopg2

    arrow = pa.Table.from_pandas(df, preserve_index=False)
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            if create:
                cur.execute(DDL.read_text())
            step = 500_000
            for start in range(0, max(arrow.num_rows, 1), step):
                buf = io.BytesIO()
                pcsv.write_csv(
                    arrow.slice(start, step),
                    buf,
                    pcsv.WriteOptions(include_header=False, quoting_style="needed"),
                )
                buf.seek(0)
                cols = ", ".join(arrow.column_names)
                cur.copy_expert(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)", buf)
        conn.commit()
    finally:
        conn.close()
    return arrow.num_rows


@pytest.fixture
def pg_load(pg_dsn: str) -> Callable[..., int]:
    """``pg_load(df, table)``: COPY a DataFrame into ``table`` of the test's schema (tables from ddl.sql)."""

    def load(df: pd.DataFrame, table: str, *, create: bool = True) -> int:
        return copy_dataframe(pg_dsn, df, table, create=create)

    return load


# --- S3 (moto) ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_endpoint(_moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """URL of the moto S3 server, reset and with AWS_* variables pointing at it for this test."""
    urllib.request.urlopen(
        urllib.request.Request(f"{_moto_server}/moto-api/reset", method="POST"), timeout=10
    )
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", _moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    return _moto_server


# --- GCS (gcp-storage-emulator) -------------------------------------------------------------------


@pytest.fixture(scope="session")
def _gcs_server() -> Iterator[tuple[str, object]]:
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.stop()


@pytest.fixture
def gcs_endpoint(_gcs_server: tuple[str, object], monkeypatch: pytest.MonkeyPatch) -> str:
    """URL of the GCS emulator, wiped and with STORAGE_EMULATOR_HOST pointing at it for this test."""
    url, server = _gcs_server
    server.wipe()  # type: ignore[attr-defined]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    return url


# --- demo data ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """The generator's tiny world with its stand-in encoder, built once per session; read-only to tests."""
    from searchrec import demo_data
    from searchrec.encoder import build_standin_encoder

    out = tmp_path_factory.mktemp("demo") / "data"
    demo_data.generate(out, size="tiny", seed=0)
    build_standin_encoder(demo_data.query_texts(out), out / "encoder", seed=0)
    return out


@pytest.fixture(params=["local", "s3", "gs"])
def backend(request, tmp_path: Path) -> Callable[[str], str]:
    """A function giving the URI of a fresh folder (or prefix) on the backend under test: a local folder,
    the moto S3 server or the GCS emulator (the tests run once per backend)."""
    if request.param == "local":
        return lambda name: str(tmp_path / "remote" / name)
    if request.param == "s3":
        request.getfixturevalue("s3_endpoint")
        import boto3

        boto3.client("s3").create_bucket(Bucket="searchrec-test")
        return lambda name: f"s3://searchrec-test/team/{name}"
    request.getfixturevalue("gcs_endpoint")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    gcs.Client(credentials=AnonymousCredentials(), project="test").create_bucket("searchrec-test")
    return lambda name: f"gs://searchrec-test/team/{name}"


VERTEX_PIPELINE_BUCKET = "ml-platform-pipelines"  # the pipeline root's bucket in the Vertex tests


@pytest.fixture()
def vertex(monkeypatch: pytest.MonkeyPatch, gcs_endpoint: str):
    """The loopback Vertex AI stand-in (tests/vertex_api_server.py), with aiplatform's client on its REST
    transport pointed at it, anonymous.

    aiplatform's submit first checks the pipeline root's bucket: against the GCS emulator, where the bucket
    exists. It then asks Cloud Resource Manager whether the bucket is the project's (no stand-in here):
    that answers at once that it cannot, as an air-gapped runner would after minutes of retries, and
    aiplatform logs it and submits anyway."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import resource_manager_utils

    from tests.vertex_api_server import VertexApiServer

    gcs.Client(credentials=AnonymousCredentials(), project="test").create_bucket(VERTEX_PIPELINE_BUCKET)

    def no_resource_manager(project: str) -> int:
        raise ConnectionError(f"no Cloud Resource Manager on loopback (project {project})")

    monkeypatch.setattr(resource_manager_utils, "get_project_number", no_resource_manager)
    with VertexApiServer() as server:
        monkeypatch.setattr(initializer.global_config, "_api_endpoint", server.url)
        monkeypatch.setattr(initializer.global_config, "_api_transport", "rest")
        monkeypatch.setattr(initializer.global_config, "_credentials", AnonymousCredentials())
        yield server
