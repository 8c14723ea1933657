"""Preflight: one task per stage image, each checking what that stage needs (searchrec.preflight)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from searchrec import config


@dsl.component(base_image=config.image("extract"), install_kfp_package=False)
def preflight_extract(
    warehouse_uri: str,
    embeddings_uri: str,
    date: str,
    probe: Output[Artifact],
    report: Output[Markdown],
    warehouse_secret: str = "",
    snapshot_max_days: int = 14,  # config.SNAPSHOT_MAX_DAYS
):
    """Image, warehouse (credentials and contract columns), embeddings partition, pipeline root write."""
    from pathlib import Path

    from searchrec.preflight import extract_checks, finish
    from searchrec.runtime import stage

    with stage("preflight extract", warehouse_uri=warehouse_uri, embeddings_uri=embeddings_uri):
        checks = extract_checks(
            warehouse_uri, warehouse_secret, embeddings_uri, date, snapshot_max_days, Path(probe.path)
        )
        finish(checks, Path(report.path), "preflight: extract image")


@dsl.component(base_image=config.image("clean"), install_kfp_package=False)
def preflight_clean(probe: Input[Artifact], report: Output[Markdown]):
    """Image, and the artifact the extract task wrote reads back complete."""
    from pathlib import Path

    from searchrec.preflight import clean_checks, finish
    from searchrec.runtime import stage

    with stage("preflight clean"):
        finish(clean_checks(Path(probe.path)), Path(report.path), "preflight: clean image")


@dsl.component(base_image=config.image("encode"), install_kfp_package=False)
def preflight_encode(
    encoder: Input[Model], report: Output[Markdown], allow_no_gpu: bool = False, require_manifest: bool = True
):
    """Image, GPU (torch and faiss), and the encoder loads with its manifest verified."""
    from pathlib import Path

    from searchrec.preflight import finish, gpu_stage_checks
    from searchrec.runtime import stage

    with stage("preflight encode", encoder=encoder.uri):
        fetched = Path(encoder.path) if encoder.path else None
        source = str(fetched) if fetched is not None and fetched.is_dir() else encoder.uri
        checks = gpu_stage_checks("encode", allow_no_gpu, encoder=source, require_manifest=require_manifest)
        finish(checks, Path(report.path), "preflight: encode image")


@dsl.component(base_image=config.image("train"), install_kfp_package=False)
def preflight_train(report: Output[Markdown], allow_no_gpu: bool = False):
    """Image and GPU (torch and faiss)."""
    from pathlib import Path

    from searchrec.preflight import finish, gpu_stage_checks
    from searchrec.runtime import stage

    with stage("preflight train"):
        finish(gpu_stage_checks("train", allow_no_gpu), Path(report.path), "preflight: train image")


@dsl.component(base_image=config.image("index"), install_kfp_package=False)
def preflight_index(report: Output[Markdown], allow_no_gpu: bool = False):
    """Image and GPU (torch and faiss)."""
    from pathlib import Path

    from searchrec.preflight import finish, gpu_stage_checks
    from searchrec.runtime import stage

    with stage("preflight index"):
        finish(gpu_stage_checks("index", allow_no_gpu), Path(report.path), "preflight: index image")


@dsl.component(base_image=config.image("infer"), install_kfp_package=False)
def preflight_infer(report: Output[Markdown], allow_no_gpu: bool = False):
    """Image and GPU (torch and faiss)."""
    from pathlib import Path

    from searchrec.preflight import finish, gpu_stage_checks
    from searchrec.runtime import stage

    with stage("preflight infer"):
        finish(gpu_stage_checks("infer", allow_no_gpu), Path(report.path), "preflight: infer image")


@dsl.component(base_image=config.image("clean"), install_kfp_package=False)
def preflight_report(
    extract: Input[Markdown],
    clean: Input[Markdown],
    encode: Input[Markdown],
    train: Input[Markdown],
    index: Input[Markdown],
    infer: Input[Markdown],
    report: Output[Markdown],
):
    """Every check of every stage image in one Markdown table."""
    from pathlib import Path

    from searchrec.preflight import summarize
    from searchrec.runtime import stage

    with stage("preflight report"):
        parts = [extract, clean, encode, train, index, infer]
        rows = summarize([Path(p.path) for p in parts], Path(report.path))
        report.metadata["checks"] = len(rows)
        report.metadata["failed"] = sum(r[2] != "PASS" for r in rows)
