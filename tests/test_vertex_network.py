"""Vertex AI networking on submit and schedule, checked on the request bodies the official client sends."""

import pytest
from google.auth.credentials import AnonymousCredentials

from searchrec import config, submit
from searchrec.cli import main
from searchrec.errors import SearchrecError

WINDOW = {"start_date": "2026-10-01", "end_date": "2026-10-07"}
PARAMS = {
    "encoder": "gs://ml-models/encoders/rubert-tiny2",
    "warehouse_uri": "postgresql://10.20.0.5:5432/dwh",
    "embeddings_uri": "gs://ml-bert4rec/nm_embeddings",
    "warehouse_secret": "projects/ml-platform/secrets/searchrec-greenplum/versions/latest",
}
NETWORK = "projects/123456789/global/networks/ml-vpc"
ATTACHMENT = "projects/ml-platform/regions/europe-west4/networkAttachments/searchrec-psc"


def _target(**network) -> dict:
    return dict(
        vertex_project="ml-platform",
        vertex_location="europe-west4",
        pipeline_root="gs://ml-platform-pipelines/searchrec",
        credentials=AnonymousCredentials(),
        tag=config.IMAGE_TAG,
        experiment="",
        params=PARAMS,
        vertex_network=submit.VertexNetwork(**network),
    )


def test_submit_peers_the_run_with_the_vpc(vertex):
    run = submit.submit(
        "training", **WINDOW, **_target(network=NETWORK, reserved_ip_ranges=("vertex-ai-range",))
    )
    (call,) = vertex.posts("/pipelineJobs")
    assert call.path == "/v1/projects/ml-platform/locations/europe-west4/pipelineJobs"
    assert call.body["network"] == NETWORK and call.body["reservedIpRanges"] == ["vertex-ai-range"]
    assert "pscInterfaceConfig" not in call.body
    assert call.body["runtimeConfig"]["parameterValues"]["warehouse_uri"] == PARAMS["warehouse_uri"]
    assert run.endswith("/pipelineJobs/" + call.query["pipelineJobId"][0])


def test_submit_uses_a_psc_interface(vertex):
    submit.submit("training", **WINDOW, **_target(psc_network_attachment=ATTACHMENT))
    (call,) = vertex.posts("/pipelineJobs")
    assert call.body["pscInterfaceConfig"] == {"networkAttachment": ATTACHMENT}
    assert "network" not in call.body


def test_schedule_carries_the_network_into_every_run(vertex):
    made = submit.schedule(
        "recommend",
        cron="0 4 * * *",
        **WINDOW,
        **{**_target(network=NETWORK), "params": {**PARAMS, "model_uri": "gs://m/model"}},
    )
    (call,) = vertex.posts("/schedules")
    job = call.body["createPipelineJobRequest"]["pipelineJob"]
    assert job["network"] == NETWORK and call.body["cron"].endswith("0 4 * * *")
    assert made.endswith("/schedules/4242")

    submit.schedule("training", cron="0 2 * * 1", **WINDOW, **_target(psc_network_attachment=ATTACHMENT))
    job = vertex.posts("/schedules")[-1].body["createPipelineJobRequest"]["pipelineJob"]
    assert job["pscInterfaceConfig"] == {"networkAttachment": ATTACHMENT}


@pytest.mark.parametrize(
    "network, message",
    [
        (dict(network=NETWORK, psc_network_attachment=ATTACHMENT), "either --network .* not both"),
        (dict(network="ml-vpc"), "--network must be projects/<project number>/global/networks/<name>"),
        (dict(psc_network_attachment="searchrec-psc"), "--psc-network-attachment must be"),
        (dict(reserved_ip_ranges=("r",)), "--reserved-ip-range needs --network"),
    ],
)
def test_bad_network_settings_are_one_line_before_any_request(vertex, network, message):
    with pytest.raises(SearchrecError, match=message):
        submit.submit("training", **WINDOW, **_target(**network))
    assert vertex.calls == []


def test_network_is_refused_for_kubeflow_and_read_from_the_command_line(capsys, monkeypatch):
    with pytest.raises(
        SearchrecError, match="Vertex AI settings; Kubeflow Pipelines tasks run in the cluster"
    ):
        submit.submit(
            "training",
            host="http://127.0.0.1:1",
            vertex_network=submit.VertexNetwork(network=NETWORK),
            **WINDOW,
        )
    monkeypatch.setenv(config.VERTEX_NETWORK_ENV, NETWORK)
    argv = ["submit", "--pipeline", "training", "--start-date", "2026-10-01", "--end-date", "2026-10-07"]
    assert main([*argv, "--host", "http://127.0.0.1:1", "--psc-network-attachment", ATTACHMENT]) == 1
    assert "either --network (VPC peering) or --psc-network-attachment, not both" in capsys.readouterr().err
