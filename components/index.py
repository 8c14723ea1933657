"""index: item tower over every snapshot item, then faiss (exact, or approximate with measured recall)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from searchrec import config


@dsl.component(base_image=config.image("index"), install_kfp_package=False)
def build_index(
    model: Input[Model],
    snapshot: Input[Dataset],
    encoded: Input[Dataset],
    index: Output[Artifact],
    metrics: Output[Metrics],
    kind: str = "auto",  # config.INDEX_KIND
    min_recall: float = 0.95,  # config.MIN_INDEX_RECALL
):
    from pathlib import Path

    from searchrec.caching import keep_metrics_file
    from searchrec.runtime import lineage, stage
    from searchrec.stages.index import build_index as run

    with stage("index"):
        stats = run(
            Path(model.path),
            Path(snapshot.path),
            Path(index.path),
            kind=kind,
            min_recall=min_recall,
            encoded_dir=Path(encoded.path),  # real user histories: what recall is tuned on
        )
        index.metadata.update(lineage(**stats.as_metadata()))
        for name, value in stats.as_metrics().items():
            metrics.log_metric(name, value)
        keep_metrics_file(
            metrics
        )  # kfp.local reuses (and `run --resume` skips) the task only if the file exists
