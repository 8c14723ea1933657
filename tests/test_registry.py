"""Model registry: versions, the CURRENT pointer and the promotion gate, on a local folder, moto S3 and
the GCS emulator; the promote stage on small synthetic data with real training and real evaluation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from searchrec import registry, storage
from searchrec.artifacts import model as model_artifact
from searchrec.errors import SearchrecError
from searchrec.stages.promote import promote_model, score_on_holdout
from searchrec.stages.train import train_two_tower
from tests.stages.test_train import FAST, make_inputs
from tests.vertex_model_registry_server import VertexModelRegistry


@pytest.fixture(params=["local", "s3", "gs"])
def root(request, tmp_path: Path) -> str:
    """A fresh registry root on the backend under test."""
    if request.param == "local":
        return str(tmp_path / "models")
    if request.param == "s3":
        request.getfixturevalue("s3_endpoint")
        import boto3

        boto3.client("s3").create_bucket(Bucket="registry")
        return "s3://registry/searchrec/models"
    request.getfixturevalue("gcs_endpoint")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    gcs.Client(credentials=AnonymousCredentials(), project="test").create_bucket("registry")
    return "gs://registry/searchrec/models"


def _model_dir(path: Path, recall: float = 0.5, popularity: float = 0.1) -> Path:
    path.mkdir(parents=True)
    (path / model_artifact.CONFIG_FILE).write_text(
        json.dumps(
            {"extra": {"metrics": {"model_recall_at_200": recall, "popularity_recall_at_200": popularity}}}
        )
    )
    (path / model_artifact.QUERY_TOWER_FILE).write_bytes(b"q" * 100)
    (path / model_artifact.ITEM_TOWER_FILE).write_bytes(b"i" * 100)
    return path


def test_pointer_moves_only_to_complete_versions_and_resolves(root, tmp_path):
    model = _model_dir(tmp_path / "model")
    assert registry.read_pointer(root) is None
    uri = registry.publish_version(
        root, "2026-10-07-abc", model, {registry.DECISION_FILE: b'{"status": "rejected"}'}
    )
    with pytest.raises(SearchrecError, match="neither a model folder"):
        registry.resolve(root)  # published but never promoted: nothing to serve
    assert registry.resolve(uri) == registry.Resolved(uri=uri)  # a version folder is a model folder

    registry.set_current(root, "2026-10-07-abc", model_recall_at_200=0.5)
    resolved = registry.resolve(root)
    assert resolved == registry.Resolved(uri=uri, root=root, version="2026-10-07-abc")
    fetched = registry.fetch(resolved.uri, tmp_path / "fetched")
    assert (fetched / model_artifact.QUERY_TOWER_FILE).read_bytes() == b"q" * 100
    assert json.loads((fetched / registry.DECISION_FILE).read_text())["status"] == "rejected"
    assert [v["version"] for v in registry.versions(root) if v["current"]] == ["2026-10-07-abc"]

    with pytest.raises(SearchrecError, match="already published"):
        registry.publish_version(root, "2026-10-07-abc", model, {})
    with pytest.raises(SearchrecError, match="not completely published"):
        registry.set_current(root, "2026-10-08-never", model_recall_at_200=0.9)
    assert registry.read_pointer(root)["version"] == "2026-10-07-abc"


def test_pointer_to_an_incomplete_version_is_refused(tmp_path):
    root = str(tmp_path / "models")
    storage.write_bytes(storage.join_uri(root, registry.POINTER), json.dumps({"version": "v1"}).encode())
    storage.write_bytes(storage.join_uri(root, "v1", model_artifact.CONFIG_FILE), b"{}")
    with pytest.raises(SearchrecError, match="incomplete"):
        registry.resolve(root)


@pytest.mark.parametrize(
    ("new", "incumbent", "promoted", "reason"),
    [
        ((0.5, 0.1), None, True, "no current model"),
        ((0.14, 0.1), None, False, "< 1.5 x popularity"),
        ((0.5, 0.1), 0.505, True, "vs current 0.5050"),
        ((0.5, 0.1), 0.52, False, "more than 0.01 below the current model's 0.5200"),
        ((0.5, None), None, False, "no holdout metrics"),
    ],
)
def test_gate(new, incumbent, promoted, reason):
    metrics = {"model_recall_at_200": new[0]}
    if new[1] is not None:
        metrics["popularity_recall_at_200"] = new[1]
    current = None if incumbent is None else {"model_recall_at_200": incumbent}
    decision = registry.gate(metrics, current, min_lift=1.5, max_regression=0.01)
    assert decision.promoted is promoted and reason in decision.reason


def test_version_name_is_window_end_and_short_run_id():
    assert registry.version_name("2026-10-07", "3F9C2A1B-77aa-4d0e") == "2026-10-07-3f9c2a1b"
    with pytest.raises(SearchrecError, match="YYYY-MM-DD"):
        registry.version_name("yesterday", "abc")


# --- the promote stage on real training -------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("promote")
    inputs = make_inputs(root / "inputs", n_train=1500, n_holdout=300)
    good = train_two_tower(*inputs, root / "good", params=FAST)
    worse = train_two_tower(*inputs, root / "worse", params=replace(FAST, epochs=1, lr=1e-6))
    return {"inputs": inputs, "good": good.model_dir, "worse": worse.model_dir, "root": root}


def test_incumbent_is_scored_like_the_train_stage(trained):
    config = json.loads((trained["good"] / model_artifact.CONFIG_FILE).read_text())
    scored = score_on_holdout(trained["good"], *trained["inputs"])
    assert scored["model_recall_at_200"] == pytest.approx(
        config["extra"]["metrics"]["model_recall_at_200"], abs=1e-6
    )


def test_worse_model_is_published_but_not_promoted(trained, tmp_path):
    root = str(tmp_path / "models")
    # 400 items: popularity alone reaches Recall@200 0.86 here, so the lift check is test_gate's.
    kw = dict(min_lift=1.0, max_regression=0.01, lineage={"train_end": "2026-10-07"})
    first = promote_model(trained["good"], *trained["inputs"], root, version="2026-10-07-run1", **kw)
    assert first.decision.promoted and first.incumbent is None
    second = promote_model(trained["worse"], *trained["inputs"], root, version="2026-10-07-run2", **kw)
    assert not second.decision.promoted
    assert second.incumbent_version == "2026-10-07-run1"
    assert second.as_metrics()["incumbent_recall_at_200"] == pytest.approx(
        first.metrics["model_recall_at_200"], abs=1e-6
    )
    assert registry.read_pointer(root)["version"] == "2026-10-07-run1"
    published = {v["version"]: v for v in registry.versions(root)}
    assert published["2026-10-07-run2"]["status"] == "rejected" and published["2026-10-07-run2"]["reason"]
    assert (
        json.loads(Path(root, "2026-10-07-run2", registry.LINEAGE_FILE).read_text())["train_end"]
        == "2026-10-07"
    )
    assert "not promoted" in second.markdown()


def test_incumbent_that_does_not_fit_the_data_is_noted(trained, tmp_path):
    root = str(tmp_path / "models")
    odd = tmp_path / "odd"
    from searchrec.model import TwoTower, TwoTowerConfig

    TwoTower(TwoTowerConfig(query_dim=7, item_dim=3)).save(odd)
    registry.publish_version(root, "2026-09-01-old", odd, {registry.DECISION_FILE: b"{}"})
    registry.set_current(root, "2026-09-01-old")
    result = promote_model(
        trained["good"], *trained["inputs"], root, version="2026-10-07-new", min_lift=1.0, max_regression=0.01
    )
    assert result.decision.promoted and "could not be scored" in result.decision.reason
    assert "query_dim 7 vs 24" in result.decision.reason


# --- Vertex AI Model Registry ---------------------------------------------------------------------------


@pytest.fixture()
def vertex():
    from google.cloud import aiplatform

    # aiplatform.init() sets process-wide state (project, endpoint): put it back as it was afterwards
    state = dict(vars(aiplatform.initializer.global_config))
    server = VertexModelRegistry()
    yield server
    server.close()
    vars(aiplatform.initializer.global_config).clear()
    vars(aiplatform.initializer.global_config).update(state)


def test_vertex_upload_is_a_new_version_of_one_parent_model(vertex):
    from google.auth.credentials import AnonymousCredentials

    kw = dict(
        model_id="searchrec-two-tower",
        serving_image="europe-docker.pkg.dev/ml/searchrec-infer:abc",
        project="ml-platform",
        location="europe-west4",
        api_endpoint=vertex.url,
        credentials=AnonymousCredentials(),
    )
    root = "gs://ml-models/searchrec"
    first = registry.upload_to_vertex(
        f"{root}/2026-10-07-aaaa1111", "2026-10-07-aaaa1111", registry.Decision(True, "first model"), **kw
    )
    second = registry.upload_to_vertex(
        f"{root}/2026-10-14-bbbb2222", "2026-10-14-bbbb2222", registry.Decision(False, "worse"), **kw
    )
    uploads = [(path, body) for method, path, body in vertex.requests if method == "POST"]
    assert [p.split("?")[0] for p, _ in uploads] == [
        "/v1/projects/ml-platform/locations/europe-west4/models:upload"
    ] * 2
    (_, new), (_, version) = uploads
    assert new["modelId"] == "searchrec-two-tower" and "parentModel" not in new
    assert version["parentModel"] == "projects/ml-platform/locations/europe-west4/models/searchrec-two-tower"
    assert new["model"]["artifactUri"] == f"{root}/2026-10-07-aaaa1111"
    assert new["model"]["containerSpec"]["imageUri"] == kw["serving_image"]
    assert (
        "default" in new["model"]["versionAliases"]
        and "v2026-10-07-aaaa1111" in new["model"]["versionAliases"]
    )
    assert "default" not in version["model"]["versionAliases"]  # a rejected model is not the default version
    assert version["model"]["labels"]["searchrec_status"] == "rejected"
    assert version["model"]["versionDescription"] == "rejected: worse"
    assert (first.rsplit("@", 1)[1], second.rsplit("@", 1)[1]) == ("1", "2")


def test_vertex_upload_needs_a_gcs_folder():
    with pytest.raises(SearchrecError, match="gs://"):
        registry.upload_to_vertex(
            "s3://m/v1", "v1", registry.Decision(True, ""), model_id="m", serving_image="i"
        )
