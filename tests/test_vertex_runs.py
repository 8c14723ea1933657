"""`searchrec runs --vertex-project`: the pipeline jobs submitted from here, listed through aiplatform's
PipelineJob.list against the loopback Vertex AI stand-in (jobs submitted by the project's own submit code)."""

import json

from google.auth.credentials import AnonymousCredentials

from searchrec import config, registry, submit
from searchrec.cli import main

PROJECT, LOCATION = "ml-platform", "europe-west4"
PARAMS = {
    "encoder": "gs://ml-models/encoders/rubert-tiny2",
    "warehouse_uri": "bigquery://ml-platform/dwh",
    "embeddings_uri": "gs://ml-bert4rec/nm_embeddings",
}


def _submit(pipeline: str, start: str, end: str, **params) -> str:
    return submit.submit(
        pipeline,
        start_date=start,
        end_date=end,
        params={**PARAMS, **params},
        vertex_project=PROJECT,
        vertex_location=LOCATION,
        pipeline_root="gs://ml-platform-pipelines/searchrec",
        credentials=AnonymousCredentials(),
        tag=config.IMAGE_TAG,
        experiment="",
    )


def test_runs_lists_the_submitted_vertex_jobs_with_windows_states_and_metrics(vertex, capsys):
    training = _submit("training", "2026-09-01", "2026-09-28")
    recommend = _submit("recommend", "2026-10-01", "2026-10-28", model_uri="gs://ml-models/searchrec")
    (first, second) = vertex.posts("/pipelineJobs")
    assert first.body["labels"] == {"app": "searchrec", "pipeline": "training"}
    assert second.body["labels"]["pipeline"] == "recommend"
    metrics = {registry.GATE_METRIC: 0.4321}
    vertex.finish(
        training,
        "SUCCEEDED",
        754,
        {"train": {"metrics": metrics}, "promote": {"decision": {"promoted": False}}},
    )

    assert main(["runs", "--vertex-project", PROJECT, "--vertex-location", LOCATION, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    listed = vertex.calls[-1]
    assert (
        listed.method == "GET" and listed.path == f"/v1/projects/{PROJECT}/locations/{LOCATION}/pipelineJobs"
    )
    assert listed.query["filter"] == ['labels.app="searchrec"']
    by_pipeline = {row["pipeline"]: row for row in rows}
    assert [row["pipeline"] for row in rows] == ["recommend", "training"]  # newest first
    assert by_pipeline["training"] | {"started": ""} == {
        "run_id": training.rsplit("/", 1)[1],
        "pipeline": "training",
        "window": "2026-09-01..2026-09-28",
        "state": "SUCCEEDED",
        "started": "",
        "seconds": 754.0,
        "recall_at_200": 0.4321,
        "promoted": "no",
        "link": submit_link(training),
    }
    assert by_pipeline["recommend"]["run_id"] == recommend.rsplit("/", 1)[1]
    assert by_pipeline["recommend"]["state"] == "PENDING"
    assert by_pipeline["recommend"]["window"] == "2026-10-01..2026-10-28"
    assert by_pipeline["recommend"]["seconds"] is None and by_pipeline["recommend"]["recall_at_200"] is None

    assert main(["runs", "--vertex-project", PROJECT, "--pipeline", "training"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert vertex.calls[-1].query["filter"] == ['labels.app="searchrec" AND labels.pipeline="training"']
    assert (
        len(table) == 2 and "2026-09-01..2026-09-28" in table[1] and table[1].endswith(submit_link(training))
    )
    assert "0.4321" in table[1] and "SUCCEEDED" in table[1]


def submit_link(name: str) -> str:
    from searchrec.runs import ui_link

    return ui_link(name)


def test_a_kfp_host_and_a_vertex_project_together_are_refused(vertex, capsys):
    assert main(["runs", "--vertex-project", PROJECT, "--host", "http://127.0.0.1:1"]) == 1
    assert "either a Kubeflow Pipelines host or a Vertex AI project, not both" in capsys.readouterr().err
    assert vertex.calls == []


def test_an_unreachable_vertex_endpoint_is_one_line(monkeypatch, capsys):
    from google.cloud.aiplatform import initializer

    monkeypatch.setattr(initializer.global_config, "_api_endpoint", "http://127.0.0.1:1")
    monkeypatch.setattr(initializer.global_config, "_api_transport", "rest")
    monkeypatch.setattr(initializer.global_config, "_credentials", AnonymousCredentials())
    assert main(["runs", "--vertex-project", PROJECT]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot list pipeline jobs of Vertex AI project {PROJECT}" in err[0]
