"""Production defaults from settings at compile time; cluster runs refuse what a cluster cannot load."""

from pathlib import Path

import pytest
import yaml

from searchrec import config, submit
from searchrec.errors import SearchrecError
from tests.kfp_api_server import KfpApiServer

WINDOW = {"start_date": "2026-10-01", "end_date": "2026-10-07"}
SETTINGS = """
[production]
encoder = "gs://ml-models/encoders/rubert-tiny2"
warehouse_uri = "postgresql://gp-master.internal:5432/dwh"
embeddings_uri = "gs://ml-bert4rec/nm_embeddings"
warehouse_secret = "projects/ml-platform/secrets/searchrec-greenplum/versions/latest"
"""


def _defaults(path: Path) -> dict:
    spec = next(d for d in yaml.safe_load_all(path.read_text()) if d)
    return {n: p.get("defaultValue") for n, p in spec["root"]["inputDefinitions"]["parameters"].items()}


def test_pipeline_source_names_no_host_or_bucket():
    import re

    root = submit.repo_root() / "pipelines"
    for path in root.glob("*.py"):
        named = re.findall(r"(?:postgres(?:ql)?|gs|s3)://[\w-][\w.-]*", path.read_text())  # a host or bucket
        assert named == [], path.name


def test_defaults_come_from_the_settings_file_and_the_environment_wins(tmp_path):
    settings = tmp_path / "production.toml"
    settings.write_text(SETTINGS)
    env = {config.SETTINGS_ENV: str(settings), "SEARCHREC_EMBEDDINGS_URI": "s3://other/nm_embeddings"}
    for platform in ("vertex", "kfp"):
        (training,) = submit.compile_pipelines(
            ["training"], tmp_path / platform, tag="t", platform=platform, env=env
        )
        defaults = _defaults(training)
        assert defaults["encoder"] == "gs://ml-models/encoders/rubert-tiny2"
        assert defaults["warehouse_uri"] == "postgresql://gp-master.internal:5432/dwh"
        assert defaults["embeddings_uri"] == "s3://other/nm_embeddings"
        # the Secret Manager login is a Vertex default only; KFP keeps its Kubernetes Secret
        secret = "projects/ml-platform/secrets/searchrec-greenplum/versions/latest"
        assert defaults["warehouse_secret"] == (secret if platform == "vertex" else "")


def test_without_settings_there_is_no_host_and_the_hub_id_stays_the_encoder():
    defaults = config.production_defaults({})
    assert defaults == config.ProductionDefaults(encoder=config.PRODUCTION_ENCODER_ID)
    assert defaults.warehouse_uri == defaults.embeddings_uri == ""


@pytest.mark.parametrize(
    "text, message",
    [
        ('[production]\nwarehouse = "x"\n', "unknown key.*warehouse; known: encoder"),
        ("[production\n", "is not valid TOML"),
        (
            '[production]\nwarehouse_uri = "postgresql://svc:hunter2@gp/dwh"\n',
            "warehouse_uri carries a password",
        ),
    ],
)
def test_bad_settings_are_one_line(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(SearchrecError, match=message) as error:
        config.production_defaults({config.SETTINGS_ENV: str(path)})
    assert "hunter2" not in str(error.value)
    with pytest.raises(SearchrecError, match="cannot read"):
        config.production_defaults({config.SETTINGS_ENV: str(tmp_path / "missing.toml")})
    with pytest.raises(SearchrecError, match="compiling training failed: .*carries a password"):
        submit.compile_pipelines(
            ["training"],
            tmp_path / "c",
            tag="t",
            env={"SEARCHREC_WAREHOUSE_URI": "postgresql://u:hunter2@gp/dwh"},
        )


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {},
            "encoder cointegrated/rubert-tiny2 is a Hugging Face id .*searchrec encoder publish cointegrated/rubert-tiny2 gs://",
        ),
        (
            {"encoder": "data/demo/encoder"},
            "encoder data/demo/encoder is not a bucket folder .*searchrec encoder publish",
        ),
        ({"encoder": "gs://m/enc"}, "no warehouse_uri: pass --param warehouse_uri=.* or set it"),
        ({"encoder": "gs://m/enc", "warehouse_uri": "postgresql://gp:5432/dwh"}, "no embeddings_uri"),
    ],
)
def test_cluster_runs_need_a_published_encoder_and_the_sources(params, message):
    with KfpApiServer() as server:
        with pytest.raises(SearchrecError, match=message):
            submit.submit("training", host=server.url, params=params, tag=config.IMAGE_TAG, **WINDOW)
        assert server.requests == []
