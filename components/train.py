"""train: the two-tower model (best validation epoch), holdout metrics against popularity (and the demo
ceiling), a report."""

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
    epochs: int = 15,  # config.TRAIN_EPOCHS
    batch_size: int = 1024,  # config.TRAIN_BATCH_SIZE
    learning_rate: float = 0.002,  # config.TRAIN_LR
    lr_schedule: str = "cosine",  # config.LR_SCHEDULE
    loss: str = "softmax",  # config.TRAIN_LOSS
    temperature: float = 0.1,  # config.TRAIN_TEMPERATURE
    padding: str = "mask",  # config.TRAIN_PADDING
    query_tower: str = "attention",  # config.QUERY_TOWER
    attention_heads: int = 1,  # config.ATTENTION_HEADS
    interests: int = 4,  # config.INTERESTS
    interest_offsets: bool = False,  # config.INTEREST_OFFSETS
    interest_diversity: float = 0.0,  # config.INTEREST_DIVERSITY
    item_tower: str = "mlp",  # config.ITEM_TOWER
    popularity_prior: bool = True,  # config.POPULARITY_PRIOR
    interest_quota: bool = False,  # config.INTEREST_QUOTA
    sampled_negatives: int = 1024,  # config.SAMPLED_NEGATIVES
    negative_sampling: str = "uniform",  # config.NEGATIVE_SAMPLING
    validation_days: int = 3,  # config.VALIDATION_DAYS
    patience: int = 2,  # config.EARLY_STOPPING_PATIENCE
    seed: int = 0,
    ground_truth_uri: str = "",
    train_start: str = "",
    train_end: str = "",
):
    """The train split's last `validation_days` choose the kept epoch (early stop after `patience` without gain);
    the holdout only reports. `train_start`/`train_end`: lineage. Empty strings take the library defaults."""
    from pathlib import Path

    from searchrec.caching import keep_metrics_file
    from searchrec.runtime import lineage, stage
    from searchrec.stages.train import TrainParams, train_two_tower

    with stage("train", ground_truth_uri=ground_truth_uri):
        chosen = dict(
            loss=loss,
            padding=padding,
            query_tower=query_tower,
            item_tower=item_tower,
            negative_sampling=negative_sampling,
            lr_schedule=lr_schedule,
        )
        params = TrainParams(
            epochs=epochs,
            batch_size=batch_size,
            lr=learning_rate,
            temperature=temperature,
            sampled_negatives=sampled_negatives,
            validation_days=validation_days,
            patience=patience,
            attention_heads=attention_heads,
            interests=interests,
            interest_offsets=interest_offsets,
            interest_diversity=interest_diversity,
            popularity_prior=popularity_prior,
            interest_quota=interest_quota,
            seed=seed,
            train_start=train_start,
            train_end=train_end,
            **{k: v for k, v in chosen.items() if v},
        )
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
        keep_metrics_file(
            metrics
        )  # kfp.local reuses (and `run --resume` skips) the task only if the file exists
