"""Warehouse login from Secret Manager (Vertex AI), against a stand-in on loopback and a real PostgreSQL."""

import json
import logging
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import psycopg2
import pytest
import yaml

from searchrec import secrets, warehouse
from searchrec.errors import SearchrecError
from searchrec.stages import extract
from tests.secret_manager_server import SecretManagerServer

PASSWORD = "Greenpl-um-pa55-DO-NOT-LEAK"
SECRET = "projects/ml-platform/secrets/searchrec-greenplum"


@pytest.fixture()
def manager():
    with SecretManagerServer() as server:
        yield server


@pytest.fixture()
def clean_env(monkeypatch):
    """PGUSER / PGPASSWORD restored after the test (the loader sets them in this process)."""
    for name in (secrets.USER_ENV, secrets.PASSWORD_ENV):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)


def test_a_password_secret_sets_pgpassword(manager, clean_env):
    manager.add(SECRET, PASSWORD + "\n", version="1")
    manager.add(SECRET, "older", version="0")
    login = secrets.load_warehouse_login(SECRET, secret_client=manager.client())
    assert login.username is None and login.password == PASSWORD  # trailing newline of `echo` dropped
    assert secrets.os.environ[secrets.PASSWORD_ENV] == PASSWORD
    assert secrets.USER_ENV not in secrets.os.environ
    assert manager.requests[-1].startswith(f"/v1/{SECRET}/versions/latest:access")  # latest = version 1
    assert PASSWORD not in repr(login)


def test_json_login_reaches_libpq_and_the_value_never_leaves_the_process(
    manager, clean_env, pg_dsn, pg_load, tmp_path, caplog
):
    role = f"svc_{uuid.uuid4().hex[:10]}"
    schema = pg_dsn.split("search_path%3D", 1)[1]
    pg_load(
        pd.DataFrame(
            {"user_id": [1], "query_ts": [pd.Timestamp("2026-03-10 10:00")], "query_text": ["red shoes"]}
        ),
        "search_queries",
    )
    pg_load(
        pd.DataFrame({"user_id": [1], "order_ts": [pd.Timestamp("2026-03-10 12:00")], "nm_id": [42]}),
        "orders",
    )
    admin = psycopg2.connect(pg_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
    parts = urlsplit(pg_dsn)  # the same server and schema, no user in the URI: the login decides
    uri = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{parts.port}"))
    manager.add(SECRET, json.dumps({"username": role, "password": PASSWORD}))
    try:
        with caplog.at_level(logging.DEBUG):
            secrets.load_warehouse_login(f"{SECRET}/versions/1", secret_client=manager.client())
            with warehouse.connection(uri) as conn, conn.cursor() as cur:
                cur.execute("SELECT current_user")
                assert cur.fetchone()[0] == role
            stats = extract.extract_training_events(uri, "2026-03-10", "2026-03-10", tmp_path / "events")
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP OWNED BY {role}")
            cur.execute(f"DROP ROLE {role}")
        admin.close()
    assert stats.rows == 1
    assert f"{SECRET}/versions/1" in caplog.text  # the secret's name is logged, its value never
    for text in (caplog.text, json.dumps(stats.as_metadata())):
        assert PASSWORD not in text
    for path in (tmp_path / "events").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "secret, setup, message",
    [
        (
            f"{SECRET}-missing",
            lambda m: None,
            f"secret version {SECRET}-missing/versions/latest does not exist",
        ),
        (f"{SECRET}/versions/7", lambda m: m.add(SECRET, PASSWORD, "1"), "versions/7 does not exist"),
        (
            SECRET,
            lambda m: m.denied.add(SECRET),
            "permission denied on .* roles/secretmanager.secretAccessor",
        ),
        (SECRET, lambda m: m.add(SECRET, "{" + PASSWORD), "looks like JSON but does not parse"),
        (
            SECRET,
            lambda m: m.add(SECRET, json.dumps({"username": "u", "pw": PASSWORD})),
            "without .* 'password'",
        ),
        (SECRET, lambda m: m.add(SECRET, "   \n"), "is empty"),
        ("greenplum-password", lambda m: None, "must name a Secret Manager secret version"),
    ],
    ids=[
        "missing",
        "missing-version",
        "permission-denied",
        "bad-json",
        "json-no-password",
        "empty",
        "bad-name",
    ],
)
def test_every_failure_is_one_line_without_the_value(manager, clean_env, caplog, secret, setup, message):
    setup(manager)
    with caplog.at_level(logging.DEBUG), pytest.raises(SearchrecError, match=message) as error:
        secrets.load_warehouse_login(secret, secret_client=manager.client())
    line = str(error.value)
    assert "\n" not in line and PASSWORD not in line and PASSWORD not in caplog.text
    # no chained exception (the client's, the JSON parser's) that could print the value in a traceback
    assert error.value.__cause__ is None
    assert error.value.__context__ is None or error.value.__suppress_context__
    assert secrets.PASSWORD_ENV not in secrets.os.environ


def test_unreachable_secret_manager_is_one_line(clean_env):
    from google.auth.credentials import AnonymousCredentials

    dead = secrets.client(endpoint="http://127.0.0.1:1", credentials=AnonymousCredentials(), transport="rest")
    with pytest.raises(SearchrecError, match=f"cannot read {SECRET}/versions/latest: "):
        secrets.read_secret(SECRET, secret_client=dead)


# --- in the pipelines ----------------------------------------------------------------------------------


def test_every_extract_task_takes_the_warehouse_secret_parameter(tmp_path):
    from searchrec.submit import PIPELINE_NAMES, compile_pipelines

    for platform in ("vertex", "kfp"):
        for path in compile_pipelines(PIPELINE_NAMES, tmp_path / platform, tag="t", platform=platform):
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            spec = docs[0]
            assert "warehouse_secret" in spec["root"]["inputDefinitions"]["parameters"], path
            tasks = [
                t
                for comp in [spec["root"], *spec["components"].values()]
                for t in comp.get("dag", {}).get("tasks", {}).values()
                if "events" in t["componentRef"]["name"]
                and t["componentRef"]["name"].startswith("comp-extract")
            ]
            assert tasks, path
            for task in tasks:
                given = task["inputs"]["parameters"]["warehouse_secret"]
                assert given["componentInputParameter"] in {
                    "warehouse_secret",
                    "pipelinechannel--warehouse_secret",
                }
            if platform == "kfp":  # Kubernetes Secrets stay on Kubeflow Pipelines
                assert "searchrec-greenplum" in Path(path).read_text()
            else:
                assert "secretAsEnv" not in Path(path).read_text()


def test_vertex_submission_needs_a_warehouse_secret_for_postgresql(tmp_path):
    from google.auth.credentials import AnonymousCredentials

    from searchrec import config, submit

    target = dict(
        vertex_project="ml-platform",
        vertex_location="europe-west4",
        pipeline_root="gs://ml-platform-pipelines/searchrec",
        credentials=AnonymousCredentials(),
        tag=config.IMAGE_TAG,
        start_date="2026-10-01",
        end_date="2026-10-07",
    )
    pg = {
        "warehouse_uri": "postgresql://gp-master.internal:5432/dwh",
        "encoder": "gs://m/rubert-tiny2",
        "embeddings_uri": "gs://b/nm_embeddings",
    }
    with pytest.raises(SearchrecError, match="Vertex AI has no Kubernetes Secrets: give .*warehouse_secret="):
        submit.submit("training", params=pg, **target)
    with pytest.raises(SearchrecError, match="must name a Secret Manager secret version") as pasted:
        submit.submit("training", params={**pg, "warehouse_secret": PASSWORD}, **target)
    assert PASSWORD not in str(pasted.value)  # a password pasted as the secret's name is not echoed
