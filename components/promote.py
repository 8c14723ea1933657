"""promote: publish the trained model to the registry; it becomes CURRENT only if it passes the gate."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from searchrec import config


@dsl.component(base_image=config.image("train"), install_kfp_package=False)
def promote(
    model: Input[Model],
    report: Input[HTML],
    encoded: Input[Dataset],
    examples: Input[Dataset],
    snapshot: Input[Dataset],
    models_uri: str,
    train_end: str,
    run_id: str,
    decision: Output[Metrics],
    summary: Output[Markdown],
    min_lift: float = 1.5,  # config.PROMOTE_MIN_LIFT
    max_regression: float = 0.01,  # config.PROMOTE_MAX_REGRESSION
    vertex_model_id: str = "",
):
    """Publish to `<models_uri>/<train_end>-<short run id>/`; move `<models_uri>/CURRENT` there only if
    holdout Recall@200 >= `min_lift` x popularity and >= the current model's (scored on this run's holdout)
    minus `max_regression`. A rejected model stays published with its reason; the task still succeeds.
    `vertex_model_id`: also a new version of that model in Vertex AI Model Registry (gs:// registry only)."""
    from pathlib import Path

    from searchrec.registry import version_name
    from searchrec.runtime import lineage, stage
    from searchrec.stages.promote import promote_model

    with stage("promote", models_uri=models_uri):
        result = promote_model(
            Path(model.path),
            Path(encoded.path),
            Path(examples.path),
            Path(snapshot.path),
            models_uri,
            version=version_name(train_end, run_id),
            min_lift=min_lift,
            max_regression=max_regression,
            report_path=Path(report.path),
            vertex_model_id=vertex_model_id,
            lineage=lineage(
                run_id=run_id,
                model=dict(model.metadata),
                examples=dict(examples.metadata),
                encoded=dict(encoded.metadata),
                snapshot=dict(snapshot.metadata),
            ),
        )
        decision.metadata.update(result.as_metadata())
        for name, value in result.as_metrics().items():
            decision.log_metric(name, value)
        Path(summary.path).parent.mkdir(parents=True, exist_ok=True)
        Path(summary.path).write_text(result.markdown())
        summary.metadata.update(result.as_metadata())


# A small file read: the extract image (object-storage clients, no torch, no GPU), not infer's.
@dsl.component(base_image=config.image("extract"), install_kfp_package=False)
def resolve_model(model_uri: str, model: Output[Model]):
    """The model to serve: `model_uri` is a model folder, or a registry root whose CURRENT pointer names
    it (read now, at run time). The resolved folder is copied into this artifact and named in its metadata."""
    from pathlib import Path

    from searchrec import registry
    from searchrec.runtime import lineage, stage

    with stage("resolve_model", model_uri=model_uri):
        resolved = registry.resolve(model_uri)
        registry.fetch(resolved.uri, Path(model.path))
        model.metadata.update(lineage(**registry.model_metadata(resolved, Path(model.path))))
