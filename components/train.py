"""train: the two-tower model, holdout metrics against popularity (and the demo ceiling), a report."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from searchrec import config


@dsl.component(base_image=config.image("train"), install_kfp_package=False)
def train(
    encoded: Input[Dataset],
    examples: Input[Dataset],
    snapshot: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[HTML],
    epochs: int = 8,
    batch_size: int = 1024,
    learning_rate: float = 0.002,
    loss: str = "",
    temperature: float = 0.05,
    padding: str = "",
    seed: int = 0,
    ground_truth_uri: str = "",
    train_start: str = "",
    train_end: str = "",
):
    """Empty `loss` / `padding` take the library defaults (the variants measured best on the holdout).
    `train_start` / `train_end`: the extract window, recorded in the model's config and metadata."""
    from dataclasses import replace
    from pathlib import Path

    from searchrec.runtime import lineage, stage
    from searchrec.stages.train import TrainParams, train_two_tower

    with stage("train"):
        params = replace(
            TrainParams(),
            epochs=epochs,
            batch_size=batch_size,
            lr=learning_rate,
            temperature=temperature,
            seed=seed,
            train_start=train_start,
            train_end=train_end,
        )
        if loss:
            params = replace(params, loss=loss)
        if padding:
            params = replace(params, padding=padding)
        result = train_two_tower(
            Path(encoded.path),
            Path(examples.path),
            Path(snapshot.path),
            Path(model.path),
            params=params,
            report_path=Path(report.path),
            ground_truth_dir=Path(ground_truth_uri) if ground_truth_uri else None,
        )
        model.metadata.update(lineage(**result.as_metadata()))
        for name, value in result.metrics.items():
            metrics.log_metric(name, value)
