"""Train stage: two-tower training on the encode output, with per-epoch checkpoints (resumed when the
component is retried with the same model folder), holdout metrics against a popularity baseline and
an HTML report.

Memory: the examples are int32 history indices into the encoding table plus one item row each; the
1560 input floats of an example exist only for the current batch, gathered on the device.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from searchrec import config
from searchrec.artifacts import encoded as encoded_artifact
from searchrec.artifacts import examples as examples_artifact
from searchrec.artifacts import folder
from searchrec.artifacts import model as model_artifact
from searchrec.artifacts import snapshot as snapshot_artifact
from searchrec.errors import SearchrecError
from searchrec.evaluation import NDCG_K, RECALL_KS, encode_items, evaluate, model_metrics, quota_metrics
from searchrec.losses import LOSSES, NEGATIVE_SAMPLING, NegativeSampler, interest_diversity, retrieval_loss
from searchrec.model import (
    ITEM_TOWERS,
    PADDING_MODES,
    QUERY_TOWERS,
    TwoTower,
    TwoTowerConfig,
    gather_history,
    pick_device,
)

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
BEST_WEIGHTS = "best.safetensors"  # in CHECKPOINTS_DIR: the best validation epoch's weights
SELECTION_METRICS = (*(f"recall_at_{k}" for k in RECALL_KS), f"ndcg_at_{NDCG_K}", "mrr")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainParams:
    """Everything that shapes a training run. Defaults: searchrec.config (measured on the validation
    split of the demo and hard worlds; see tests/benchmarks/results/quality.md)."""

    epochs: int = config.TRAIN_EPOCHS
    batch_size: int = config.TRAIN_BATCH_SIZE
    lr: float = config.TRAIN_LR
    lr_schedule: str = config.LR_SCHEDULE  # one of LR_SCHEDULES; "cosine": per step over the planned epochs
    weight_decay: float = 1e-4
    output_dim: int = 128
    hidden_dim: int = 512
    dropout: float = 0.1
    loss: str = config.TRAIN_LOSS  # one of losses.LOSSES
    temperature: float = config.TRAIN_TEMPERATURE  # softmax only
    logq_correction: bool = True  # softmax only: subtract log sampling probability (Yi et al. 2019)
    margin: float | None = None  # multi_margin (default 1.0) / cosine (default 0.0)
    padding: str = config.TRAIN_PADDING  # "pad": [PAD] encoding in empty slots; "mask": zeroed
    query_tower: str = config.QUERY_TOWER  # one of model.QUERY_TOWERS
    item_tower: str = config.ITEM_TOWER  # one of model.ITEM_TOWERS
    attention_heads: int = config.ATTENTION_HEADS  # attention query tower's pooling heads
    interests: int = config.INTERESTS  # query vectors per user; an item's score is the max over them
    interest_offsets: bool = config.INTEREST_OFFSETS  # interests > 1: a learned offset per interest vector
    # interests > 1: weight of a loss term, the mean squared cosine between a user's interest vectors
    interest_diversity: float = config.INTEREST_DIVERSITY
    sampled_negatives: int = config.SAMPLED_NEGATIVES  # per step, from the whole snapshot (softmax only)
    negative_sampling: str = config.NEGATIVE_SAMPLING  # one of losses.NEGATIVE_SAMPLING
    sampling_alpha: float = config.NEGATIVE_SAMPLING_ALPHA  # popularity sampling: (count + 1) ** alpha
    validation_days: int = config.VALIDATION_DAYS  # last days of the train split held out for selection
    patience: int = config.EARLY_STOPPING_PATIENCE  # 0: run every epoch
    selection_metric: str = config.SELECTION_METRIC  # e.g. ndcg_at_200, recall_at_10
    popularity_prior: bool = config.POPULARITY_PRIOR  # fold log popularity in, weight chosen on validation
    interest_quota: bool = config.INTEREST_QUOTA  # interests > 1: a per-interest quota, chosen on validation
    seed: int = 0
    max_examples: int = 0  # 0: all training examples; else the most recent N
    max_steps_per_epoch: int = 0  # 0: whole epochs; else at most this many batches per epoch
    eval_every_epoch: bool = True  # holdout recall per epoch (a curve for the report; never selects)
    eval_max_examples: int = config.EVAL_SAMPLE  # per-epoch evaluation on a fixed sample per split
    keep_checkpoints: int = 3  # the newest N epoch checkpoints are kept (and the best epoch's weights)
    train_start: str = ""  # lineage only: the training window
    train_end: str = ""
    device: str = ""  # "": CUDA when present, else CPU

    def validate(self) -> None:
        choices = (
            ("loss", LOSSES),
            ("padding", PADDING_MODES),
            ("query_tower", QUERY_TOWERS),
            ("item_tower", ITEM_TOWERS),
            ("negative_sampling", NEGATIVE_SAMPLING),
            ("lr_schedule", LR_SCHEDULES),
        )
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise SearchrecError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        for name in (
            "epochs",
            "output_dim",
            "hidden_dim",
            "keep_checkpoints",
            "attention_heads",
            "interests",
        ):
            if int(getattr(self, name)) < 1:
                raise SearchrecError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.batch_size < 2:
            raise SearchrecError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if self.temperature <= 0 or self.lr <= 0:
            raise SearchrecError("temperature and lr must be positive")
        counts = ("max_examples", "max_steps_per_epoch", "eval_max_examples", "sampled_negatives")
        for name in counts + ("validation_days", "patience", "interest_diversity"):
            if float(getattr(self, name)) < 0:
                raise SearchrecError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.selection_metric.removeprefix("model_") not in SELECTION_METRICS:
            raise SearchrecError(
                f"selection_metric must be one of {', '.join(SELECTION_METRICS)}, got {self.selection_metric!r}"
            )

    def fingerprint(self) -> dict:
        """What must match for a checkpoint to be resumed (not epochs: a longer run continues; except under
        a learning-rate schedule, whose lr at each step depends on the planned epochs)."""
        skip = {"epochs", "eval_every_epoch", "eval_max_examples", "keep_checkpoints", "device", "patience"}
        skip.add("interest_quota")  # chosen after training: the weights do not depend on it
        if self.lr_schedule != "constant":
            skip.discard("epochs")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, float]
    history: list[dict]  # one row per epoch: loss, speed, validation_* and holdout_* metrics
    examples: int
    epochs: int  # epochs run (early stopping may end before params.epochs)
    best_epoch: int  # the epoch whose weights were saved: best validation score (else the last)
    resumed_from_epoch: int
    device: str
    seconds: float
    params: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)  # encoder, pooling, window, snapshot date, item counts

    @property
    def eval_share(self) -> float:
        """Share of the run's wall time spent on per-epoch evaluation (the sampled curves)."""
        spent = sum(float(row.get("eval_seconds") or 0.0) for row in self.history)
        return spent / self.seconds if self.seconds > 0 else 0.0

    def as_metadata(self) -> dict:
        """Flat scalars for the KFP artifact metadata."""
        meta: dict = {
            "train_examples": self.examples,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "resumed_from_epoch": self.resumed_from_epoch,
            "device": self.device,
            "train_seconds": round(self.seconds, 2),
            "eval_share": round(self.eval_share, 4),
            "final_loss": self.history[-1]["loss"] if self.history else None,
            **self.lineage,
        }
        for key in (
            *("loss", "padding", "temperature", "logq_correction", "seed", "batch_size", "lr", "lr_schedule"),
            *("query_tower", "item_tower", "attention_heads", "popularity_prior", "sampled_negatives"),
            *("negative_sampling", "validation_days", "interests", "interest_offsets", "interest_quota"),
            "interest_diversity",
        ):
            if key in self.params:
                meta[f"param_{key}"] = self.params[key]
        meta.update({k: round(float(v), 6) for k, v in self.metrics.items()})
        return {k: v for k, v in meta.items() if v is not None}


@dataclass
class TrainingData:
    table: np.ndarray  # float32 [n_queries + 1, Dq]
    train_hist: np.ndarray  # int32 [n, L]
    train_rows: np.ndarray  # int64 [n]: row of each example's item in item_emb
    train_nm_ids: np.ndarray  # int64 [n]
    val_hist: np.ndarray  # int32 [v, L]: the validation split (last validation_days of the train split)
    val_nm_ids: np.ndarray  # int64 [v]
    holdout_hist: np.ndarray  # int32 [h, L]
    holdout: pd.DataFrame  # user_id, order_ts, nm_id
    item_ids: np.ndarray  # int64 [m], sorted: the whole snapshot
    item_emb: np.ndarray  # float32 [m, Di]
    encoder: dict
    snapshot: dict
    training_items: int
    validation_start: str = ""  # first day of the validation split, "" without one
    # purchases per snapshot row in the train split before the validation split / within it (every item,
    # training target or not): the popularity prior's counts
    item_counts: np.ndarray | None = None
    validation_counts: np.ndarray | None = None


# --- inputs ---------------------------------------------------------------------------------------


def load_item_embeddings(embeddings_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The snapshot's nm_ids (sorted, unique), their embeddings [m, D] and snapshot.json."""
    ids, emb, info = snapshot_artifact.read(Path(embeddings_dir))
    if not np.isfinite(emb).all():
        raise SearchrecError(f"embeddings folder {embeddings_dir} holds NaN or infinite values")
    return ids, emb, info


def _read_split(encoded_dir: Path, split: str, table_rows: int, history_length: int | None):
    rows, hist = encoded_artifact.read_split(
        encoded_dir,
        split,
        columns=["user_id", "order_ts", "nm_id"],
        table_rows=table_rows,
        history_length=history_length,
    )
    return rows.to_pandas().reset_index(drop=True), hist


def validation_mask(order_ts: np.ndarray, days: int) -> tuple[np.ndarray, str]:
    """Rows of the train split in its last ``days`` calendar days, and that window's first day."""
    order_ts = np.asarray(order_ts, dtype="datetime64[us]")
    if days <= 0 or not len(order_ts):
        return np.zeros(len(order_ts), dtype=bool), ""
    start = order_ts.max().astype("datetime64[D]") - np.timedelta64(days - 1, "D")
    mask = order_ts >= start
    if mask.all():
        raise SearchrecError(
            f"validation_days={days} covers the whole train split (from {start}); lower it or widen the window"
        )
    return mask, str(start)


def _train_index(
    train: pd.DataFrame,
    in_snapshot: np.ndarray,
    training_items: np.ndarray,
    val: np.ndarray,
    max_examples: int,
) -> np.ndarray:
    """Rows that are trained on: not validation, item a training item in the snapshot; newest N."""
    nm = train["nm_id"].to_numpy(dtype=np.int64)
    keep = in_snapshot & np.isin(nm, training_items) & ~val
    if not keep[~val].all():
        log.warning(
            "train: %d of %d examples dropped (item not a training item or not in the snapshot)",
            int((~keep[~val]).sum()),
            int((~val).sum()),
        )
    if not keep.any():
        raise SearchrecError(
            "no training example's item is both a training item and in the embeddings snapshot"
        )
    index = np.flatnonzero(keep)
    if max_examples and len(index) > max_examples:
        order_ts = train["order_ts"].to_numpy()[index]
        index = np.sort(index[np.argsort(order_ts, kind="stable")[-max_examples:]])
        log.info("train: kept the %d most recent examples (max_examples)", len(index))
    return index


def load_training_data(
    encoded_dir: Path,
    examples_dir: Path,
    embeddings_dir: Path,
    *,
    max_examples: int = 0,
    validation_days: int = 0,
) -> TrainingData:
    """Read the encode, clean and snapshot artifacts (complete ones only); map items to snapshot rows;
    carve the validation split (the train split's last ``validation_days``, every snapshot item) out."""
    encoded_dir, examples_dir = Path(encoded_dir), Path(examples_dir)
    encoder = encoded_artifact.read_info(encoded_dir)
    table = encoded_artifact.read_table(encoded_dir, dim=int(encoder["dim"]) if "dim" in encoder else None)
    train, hist = _read_split(encoded_dir, "train", len(table), None)
    if train.empty:
        raise SearchrecError(f"the train split in {encoded_dir} is empty: nothing to train on")
    holdout, holdout_hist = _read_split(encoded_dir, "holdout", len(table), hist.shape[1])
    training_items = np.unique(examples_artifact.read_items(examples_dir))
    item_ids, item_emb, snapshot = load_item_embeddings(Path(embeddings_dir))
    nm = train["nm_id"].to_numpy(dtype=np.int64)
    pos = np.minimum(np.searchsorted(item_ids, nm), len(item_ids) - 1)
    in_snapshot = item_ids[pos] == nm
    val, val_start = validation_mask(train["order_ts"].to_numpy(), validation_days)
    index = _train_index(train, in_snapshot, training_items, val, max_examples)
    val_index = np.flatnonzero(val & in_snapshot)
    log.info("train: validation split from %s: %d examples", val_start or "-", len(val_index))
    return TrainingData(
        table=table,
        train_hist=hist if len(index) == len(nm) else np.ascontiguousarray(hist[index]),
        train_rows=pos[index].astype(np.int64, copy=False),
        train_nm_ids=nm[index],
        val_hist=np.ascontiguousarray(hist[val_index]),
        val_nm_ids=nm[val_index],
        holdout_hist=holdout_hist,
        holdout=holdout,
        item_ids=item_ids,
        item_emb=item_emb,
        encoder=encoder,
        snapshot=snapshot,
        training_items=int(len(training_items)),
        validation_start=val_start,
        item_counts=np.bincount(pos[in_snapshot & ~val], minlength=len(item_ids)).astype(np.float64),
        validation_counts=np.bincount(pos[in_snapshot & val], minlength=len(item_ids)).astype(np.float64),
    )


# --- checkpoints ----------------------------------------------------------------------------------


def _checkpoint_paths(model_dir: Path, epoch: int) -> tuple[Path, Path]:
    base = Path(model_dir) / CHECKPOINTS_DIR / f"epoch-{epoch:04d}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def save_checkpoint(
    model_dir: Path, epoch: int, model: TwoTower, optimizer: torch.optim.Optimizer, state: dict, keep: int
) -> Path:
    """Weights and optimizer tensors in safetensors, the rest in JSON (written last: the commit mark)."""
    tensors_path, json_path = _checkpoint_paths(model_dir, epoch)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    for pid, slots in opt_state["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    folder.write_atomic(tensors_path, lambda p: save_file(tensors, str(p)))
    meta = {**state, "epoch": epoch, "optimizer_param_groups": opt_state["param_groups"]}
    folder.write_atomic(json_path, lambda p: p.write_text(json.dumps(meta, indent=1, default=str)))
    for old in sorted((Path(model_dir) / CHECKPOINTS_DIR).glob("epoch-*.json"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return json_path


def latest_checkpoint(model_dir: Path) -> int:
    """The newest complete checkpoint epoch in model_dir, 0 when there is none."""
    ckpt_dir = Path(model_dir) / CHECKPOINTS_DIR
    epochs = []
    for path in ckpt_dir.glob("epoch-*.json") if ckpt_dir.is_dir() else []:
        try:
            epoch = int(path.stem.split("-", 1)[1])
        except ValueError:
            continue
        if path.with_suffix(".safetensors").is_file():
            epochs.append(epoch)
    return max(epochs, default=0)


def load_checkpoint(model_dir: Path, epoch: int, model: TwoTower, optimizer: torch.optim.Optimizer) -> dict:
    tensors_path, json_path = _checkpoint_paths(model_dir, epoch)
    meta = folder.read_json(json_path)
    try:
        tensors = load_file(str(tensors_path))
    except (OSError, ValueError, RuntimeError) as error:
        raise SearchrecError(f"cannot read checkpoint {tensors_path}: {error}") from None
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state)
    opt_state: dict = {"state": {}, "param_groups": meta["optimizer_param_groups"]}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            opt_state["state"].setdefault(int(pid), {})[name] = value
    for group in opt_state["param_groups"]:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict(opt_state)
    return meta


# --- training -------------------------------------------------------------------------------------


def _model_config(data: TrainingData, params: TrainParams) -> TwoTowerConfig:
    return TwoTowerConfig(
        query_dim=int(data.table.shape[1]),
        item_dim=int(data.item_emb.shape[1]),
        history_length=int(data.train_hist.shape[1]),
        output_dim=int(params.output_dim),
        hidden_dim=int(params.hidden_dim),
        dropout=float(params.dropout),
        padding=params.padding,
        query_tower=params.query_tower,
        item_tower=params.item_tower,
        attention_heads=int(params.attention_heads),
        interests=int(params.interests),
        interest_offsets=bool(params.interest_offsets),
    )


_OLD_DEFAULTS = {
    "query_tower": "concat",
    "item_tower": "mlp",
    "attention_heads": 1,
    "interests": 1,
    "interest_offsets": False,
    "interest_diversity": 0.0,
    "lr_schedule": "constant",
}  # checkpoints written before the option (its config and its fingerprint)


def _check_resumable(
    meta: dict, cfg: TwoTowerConfig, params: TrainParams, n_examples: int, model_dir: Path
) -> None:
    saved = meta.get("config", {})
    for name in (
        "query_dim",
        "item_dim",
        "history_length",
        "output_dim",
        "hidden_dim",
        "padding",
        "query_tower",
        "item_tower",
        "attention_heads",
        "interests",
        "interest_offsets",
    ):
        if (was := saved.get(name, _OLD_DEFAULTS.get(name))) != getattr(cfg, name):
            raise SearchrecError(
                f"checkpoint in {model_dir} has {name}={was!r} but the inputs/params give "
                f"{getattr(cfg, name)!r}; use an empty model folder"
            )
    saved_fingerprint = {**_OLD_DEFAULTS, **meta.get("fingerprint", {})}  # options added since: as before
    if saved_fingerprint != json.loads(json.dumps(params.fingerprint())):
        raise SearchrecError(
            f"checkpoint in {model_dir} was trained with other parameters; use an empty model folder"
        )
    if meta.get("train_examples") != n_examples:
        raise SearchrecError(
            f"checkpoint in {model_dir} saw {meta.get('train_examples')} training examples, now {n_examples}; "
            "use an empty model folder"
        )


def scheduled_lr(
    lr: float,
    step: int,
    total_steps: int,
    schedule: str,
    *,
    warmup: float = config.LR_WARMUP,
    floor: float = config.LR_FLOOR,
) -> float:
    """The learning rate of optimizer step ``step`` (0-based, counted over the whole run) of a run planned
    for ``total_steps``: a pure function of the step, so a resumed run gets the lr of an uninterrupted one.
    "constant": ``lr``. "cosine": linear warm-up over the first ``warmup`` share of the steps (from
    lr / warm-up steps to lr), then cosine decay to ``floor`` x lr at the last step."""
    if schedule == "constant":
        return lr
    if schedule != "cosine":
        raise SearchrecError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")
    warm = math.ceil(warmup * total_steps)
    if step < warm:
        return lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total_steps - 1 - warm))
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + epoch) % (2**63)


@dataclass
class _EvalSplit:
    hist: torch.Tensor  # int [n, L] on the device
    true_ids: np.ndarray  # int64 [n]


@dataclass
class _Run:
    """Everything the batches index, on the device, plus the evaluation splits."""

    device: torch.device
    table: torch.Tensor
    hist: torch.Tensor
    rows: torch.Tensor  # snapshot row of each example's item
    item_emb: torch.Tensor
    log_q: torch.Tensor  # per snapshot row: log training frequency (in-batch sampling probability)
    sampler: NegativeSampler | None
    is_target: torch.Tensor  # bool per snapshot row: a training target
    steps: int
    validation: _EvalSplit | None
    holdout_curve: _EvalSplit | None  # a sample of the holdout (config.CURVE_SAMPLE), the report's curve only


def _eval_split(hist: np.ndarray, true_ids: np.ndarray, limit: int, seed: int, device) -> _EvalSplit | None:
    idx = np.arange(len(true_ids))
    if not len(idx):
        return None
    rows = _sample_rows(len(idx), limit)
    if rows < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, rows, replace=False))
    return _EvalSplit(torch.from_numpy(np.ascontiguousarray(hist[idx])).to(device), true_ids[idx])


def _epoch_sample_limits(params: TrainParams) -> tuple[int, int]:
    """Rows scored each epoch: validation's and the holdout curve's (0: the whole split)."""
    limit = params.eval_max_examples
    return limit, (min(limit, config.CURVE_SAMPLE) if limit else 0)


def _sample_rows(rows: int, limit: int) -> int:
    """Rows of a split of ``rows`` that a fixed sample of at most ``limit`` scores (0: all)."""
    return min(rows, limit) if limit else rows


def _prepare_run(data: TrainingData, params: TrainParams, device: torch.device) -> _Run:
    n = len(data.train_hist)
    steps = math.ceil(n / params.batch_size) - (1 if n % params.batch_size == 1 else 0)  # no batch of one
    if params.max_steps_per_epoch:
        steps = min(steps, params.max_steps_per_epoch)
    if steps < 1:
        raise SearchrecError(f"{n} training example(s): need at least 2 for in-batch negatives")
    counts = np.bincount(data.train_rows, minlength=len(data.item_ids)).astype(np.float64)
    sampler = None
    if params.sampled_negatives and params.loss != "softmax":
        log.warning(
            "train: sampled_negatives apply to the softmax loss only; %s uses in-batch ones", params.loss
        )
    elif params.sampled_negatives:
        sampler = NegativeSampler(
            counts, params.negative_sampling, alpha=params.sampling_alpha, device=device
        )
    holdout_true = data.holdout["nm_id"].to_numpy(dtype=np.int64)
    limit, curve_limit = _epoch_sample_limits(params)
    seed = params.seed
    return _Run(
        device=device,
        table=torch.from_numpy(data.table).to(device),
        hist=torch.from_numpy(data.train_hist).to(device),
        rows=torch.from_numpy(data.train_rows).to(device),
        item_emb=torch.from_numpy(data.item_emb).to(device),
        log_q=torch.from_numpy(np.log(np.maximum(counts, 1.0) / counts.sum()).astype(np.float32)).to(device),
        sampler=sampler,
        is_target=torch.from_numpy(counts > 0).to(device),
        steps=steps,
        validation=_eval_split(data.val_hist, data.val_nm_ids, limit, seed, device),
        holdout_curve=_eval_split(data.holdout_hist, holdout_true, curve_limit, seed, device)
        if params.eval_every_epoch
        else None,
    )


def _batch_loss(
    model: TwoTower, run: _Run, batch: torch.Tensor, params: TrainParams, negatives: torch.Generator
) -> tuple[torch.Tensor, int]:
    """The loss of one batch, and how many of its sampled negatives are not training targets."""
    item_rows = run.rows[batch]
    history_t, mask = gather_history(run.table, run.hist[batch])
    queries = model.query_tower(history_t, mask)
    items = model.item_tower(run.item_emb[item_rows])
    correct = params.logq_correction
    extra: dict = {}
    outside = 0
    if run.sampler is not None:
        sampled = run.sampler.sample(params.sampled_negatives, negatives)
        extra = {"negatives": model.item_tower(run.item_emb[sampled]), "negative_ids": sampled}
        if correct:  # per source: log of the expected number of times an item is a candidate
            extra["negative_log_q"] = run.sampler.log_probs[sampled] + math.log(len(sampled))
        outside = int((~run.is_target[sampled]).sum())
    loss = retrieval_loss(
        params.loss,
        queries,
        items,
        item_rows,
        temperature=params.temperature,
        log_q=run.log_q[item_rows] + math.log(len(batch)) if correct else None,
        margin=params.margin,
        **extra,
    )
    if params.interest_diversity:  # 0: not even computed (today's loss, bit for bit)
        loss = loss + params.interest_diversity * interest_diversity(queries, model.cfg.output_dim)
    return loss, outside


def _train_epoch(
    model: TwoTower, optimizer: torch.optim.Optimizer, run: _Run, params: TrainParams, epoch: int
) -> dict:
    model.train()
    generator = torch.Generator().manual_seed(_epoch_seed(params.seed, epoch))
    torch.manual_seed(_epoch_seed(params.seed, epoch))  # dropout: same stream on a resumed run
    negatives = torch.Generator(device=run.device).manual_seed(_epoch_seed(params.seed + 1, epoch))
    perm = torch.randperm(len(run.hist), generator=generator).to(run.device)
    loss_sum = torch.zeros((), device=run.device)
    seen = outside = 0
    t0 = time.perf_counter()
    bar = tqdm(
        range(run.steps), desc=f"epoch {epoch}/{params.epochs}", unit="batch", mininterval=5, leave=False
    )
    scheduled = params.lr_schedule != "constant"  # constant: the optimizer's lr is never touched
    for step in bar:
        if scheduled:
            lr = scheduled_lr(
                params.lr, (epoch - 1) * run.steps + step, params.epochs * run.steps, params.lr_schedule
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
        batch = perm[step * params.batch_size : (step + 1) * params.batch_size]
        loss, out = _batch_loss(model, run, batch, params, negatives)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(batch)
        seen += len(batch)
        outside += out
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    epoch_loss = float(loss_sum) / max(seen, 1)
    if not math.isfinite(epoch_loss):
        raise SearchrecError(f"training diverged at epoch {epoch} (loss {epoch_loss}); lower lr")
    row = {"epoch": epoch, "loss": round(epoch_loss, 6), "examples": seen, "seconds": round(seconds, 3)}
    row["examples_per_s"] = round(seen / seconds, 1) if seconds > 0 else None
    if scheduled:
        row["lr"] = optimizer.param_groups[0]["lr"]  # the epoch's last step's
    if run.sampler is not None:
        row["sampled_outside_targets"] = outside  # sampled negatives that are never a training target
    return row


def _curve_metrics(model: TwoTower, run: _Run, data: TrainingData) -> dict:
    """Validation metrics (they select the epoch) and the holdout sample's recall (a curve only): the
    items encoded once for both, model metrics only (the popularity baseline does not change)."""
    out = {}
    item_vectors = encode_items(model, run.item_emb, np.asarray(data.item_ids, dtype=np.int64))
    for prefix, split in (("validation", run.validation), ("holdout", run.holdout_curve)):
        if split is None:
            continue
        m = model_metrics(model, run.table, split.hist, split.true_ids, data.item_ids, item_vectors)
        keys = [f"recall_at_{k}" for k in RECALL_KS] + (
            [f"ndcg_at_{NDCG_K}", "mrr"] if prefix == "validation" else []
        )
        out.update({f"{prefix}_{k}": round(m[f"model_{k}"], 6) for k in keys})
    return out


@dataclass
class _Selection:
    """Best validation epoch so far, and epochs since it (early stopping)."""

    metric: str
    best_epoch: int = 0
    best_score: float = float("-inf")
    bad_epochs: int = 0

    def update(self, row: dict) -> bool:
        """True when this epoch is the best so far (always, without a validation split)."""
        score = row.get(f"validation_{self.metric}")
        if score is None or score > self.best_score:
            self.best_epoch, self.bad_epochs = row["epoch"], 0
            self.best_score = float("-inf") if score is None else float(score)
            return True
        self.bad_epochs += 1
        return False


def _save_best(model_dir: Path, model: TwoTower) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(model_dir) / CHECKPOINTS_DIR / BEST_WEIGHTS
    path.parent.mkdir(parents=True, exist_ok=True)
    folder.write_atomic(path, lambda p: save_file(tensors, str(p)))


def _load_best(model_dir: Path, model: TwoTower) -> None:
    path = Path(model_dir) / CHECKPOINTS_DIR / BEST_WEIGHTS
    try:
        model.load_state_dict(load_file(str(path)))
    except (OSError, ValueError, RuntimeError) as error:
        raise SearchrecError(f"cannot read the best epoch's weights {path}: {error}") from None


def _resume(
    model_dir: Path, model: TwoTower, optimizer, cfg: TwoTowerConfig, params: TrainParams, n: int
) -> tuple[int, list[dict], _Selection]:
    selection = _Selection(params.selection_metric.removeprefix("model_"))
    start_epoch = latest_checkpoint(model_dir)
    adopted = not start_epoch and adopt_interrupted_checkpoint(model_dir)
    start_epoch = start_epoch or latest_checkpoint(model_dir)
    if not start_epoch:
        return 0, [], selection
    meta = folder.read_json(_checkpoint_paths(model_dir, start_epoch)[1])
    try:
        _check_resumable(meta, cfg, params, n, model_dir)
    except SearchrecError as error:
        if not adopted:
            raise
        log.warning("train: not continuing the interrupted attempt (%s); starting at epoch 1", error)
        folder.clear(Path(model_dir) / CHECKPOINTS_DIR)
        return 0, [], selection
    if start_epoch > params.epochs:
        raise SearchrecError(
            f"{model_dir} holds a checkpoint of epoch {start_epoch}, beyond epochs={params.epochs}"
        )
    load_checkpoint(model_dir, start_epoch, model, optimizer)
    for key, value in meta.get("selection", {}).items():
        setattr(selection, key, value)
    log.info("train: resumed from checkpoint epoch %d in %s", start_epoch, model_dir)
    return start_epoch, list(meta.get("history", [])), selection


def adopt_interrupted_checkpoint(model_dir: Path) -> bool:
    """`searchrec run --resume`: copy the newest checkpoint (and best weights) that an interrupted attempt
    of this run left in another model folder of the run folder ($SEARCHREC_RESUME_DIR) into ``model_dir``."""
    import os
    import shutil

    run_dir = os.environ.get(config.RESUME_DIR_ENV)
    if not run_dir:
        return False
    model_dir = Path(model_dir).resolve()
    attempts = [
        p.parent for p in Path(run_dir).glob(f"*/*/*/{CHECKPOINTS_DIR}") if p.parent.resolve() != model_dir
    ]
    newest = max(attempts, key=latest_checkpoint, default=None)
    epoch = latest_checkpoint(newest) if newest is not None else 0
    if not epoch:
        return False
    target = model_dir / CHECKPOINTS_DIR
    target.mkdir(parents=True, exist_ok=True)
    sources = [*_checkpoint_paths(newest, epoch), newest / CHECKPOINTS_DIR / BEST_WEIGHTS]
    for source in sorted(sources, key=lambda p: p.suffix == ".json"):  # the JSON (commit mark) last
        if source.is_file():
            shutil.copyfile(source, target / source.name)
    log.info("train: continuing the interrupted attempt in %s from its epoch %d", newest, epoch)
    return True


def _fit(
    model: TwoTower, run: _Run, data: TrainingData, params: TrainParams, model_dir: Path, cfg: TwoTowerConfig
) -> tuple[list[dict], _Selection, int]:
    """The epoch loop: train, evaluate, keep the best validation epoch, checkpoint, stop early.
    Leaves the best epoch's weights in ``model``; returns history, selection and the resumed epoch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    n = len(data.train_hist)
    start_epoch, history, selection = _resume(model_dir, model, optimizer, cfg, params, n)
    state_base = {
        "fingerprint": params.fingerprint(),
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
        "train_examples": n,
    }
    stopped = params.patience and selection.bad_epochs >= params.patience
    for epoch in range(start_epoch + 1, params.epochs + 1):
        if stopped:
            break
        row = _train_epoch(model, optimizer, run, params, epoch)
        evaluated = time.perf_counter()
        row.update(_curve_metrics(model, run, data))
        row["eval_seconds"] = round(time.perf_counter() - evaluated, 3)
        history.append(row)
        if selection.update(row):
            _save_best(model_dir, model)
        log.info("epoch %d/%d: %s", epoch, params.epochs, {k: v for k, v in row.items() if k != "epoch"})
        state = {**state_base, "history": history, "selection": asdict(selection)}
        save_checkpoint(model_dir, epoch, model, optimizer, state, params.keep_checkpoints)
        stopped = params.patience and selection.bad_epochs >= params.patience
    if stopped:
        log.info("train: early stop after epoch %d (best %d)", history[-1]["epoch"], selection.best_epoch)
    if history and selection.best_epoch != history[-1]["epoch"]:
        _load_best(model_dir, model)
    return history, selection, start_epoch


def train_two_tower(
    encoded_dir: Path,
    examples_dir: Path,
    embeddings_dir: Path,
    model_dir: Path,
    *,
    params: TrainParams | None = None,
    report_path: Path | None = None,
    ground_truth_dir: Path | None = None,
) -> TrainResult:
    """Train the two towers on the encode output; keep the best validation epoch; write the model
    folder (and the HTML report). The holdout is used only for the final metrics and the curve."""
    params = params or TrainParams()
    params.validate()
    started = time.perf_counter()
    model_dir = Path(model_dir)
    data = load_training_data(
        encoded_dir,
        examples_dir,
        embeddings_dir,
        max_examples=params.max_examples,
        validation_days=params.validation_days,
    )
    device = pick_device(params.device or None)
    log.info(
        "train: %d examples, %d validation, %d holdout, %d snapshot items, %d training items, device %s",
        *(len(data.train_hist), len(data.val_hist), len(data.holdout), len(data.item_ids)),
        *(data.training_items, device),
    )
    run = _prepare_run(data, params, device)
    cfg = _model_config(data, params)
    torch.manual_seed(int(params.seed))
    model = TwoTower(cfg).to(device)
    history, selection, start_epoch = _fit(model, run, data, params, model_dir, cfg)
    prior = choose_popularity_weight(model, run, data, params, selection.metric)
    quota = choose_interest_quota(model, run, data, params, selection.metric)
    metrics = {**_final_metrics(model, run, data, ground_truth_dir), **prior, **quota}
    return _finish(
        model, cfg, data, params, history, selection, metrics, start_epoch, started, model_dir, report_path
    )


def popularity_metric(metric: str, weight: float) -> str:
    """Metric name of a validation score with the prior at ``weight``: ``validation_ndcg_at_200_prior_0_02``."""
    return f"validation_{metric}_prior_{weight:g}".replace(".", "_")


def choose_popularity_weight(
    model: TwoTower, run: _Run, data: TrainingData, params: TrainParams, metric: str
) -> dict[str, float]:
    """The popularity prior's weight: each of config.POPULARITY_WEIGHTS scored on the validation split
    with counts from before it; the best (the smallest on ties) is kept and the served model counts
    the whole train split. Sets ``model.cfg.popularity_weight``; returns the scores as metrics."""
    if not params.popularity_prior:
        return {}
    if run.validation is None or data.item_counts is None:
        log.warning("train: no validation split, so no popularity prior (its weight is chosen on it)")
        return {}
    model.set_popularity(data.item_ids, data.item_counts)
    scores = {}
    for weight in config.POPULARITY_WEIGHTS:
        model.cfg.popularity_weight = float(weight)
        split = run.validation
        m = evaluate(
            model, run.table, split.hist, split.true_ids, data.item_ids, run.item_emb, data.train_nm_ids
        )
        scores[float(weight)] = m[f"model_{metric}"]
    best = max(scores, key=lambda w: (scores[w], -w))
    model.cfg.popularity_weight = best
    model.set_popularity(data.item_ids, data.item_counts + data.validation_counts)
    log.info("train: popularity prior weight %s (validation %s by weight: %s)", best, metric, scores)
    out = {popularity_metric(metric, w): round(v, 6) for w, v in scores.items()}
    return {**out, "popularity_weight": best}


def quota_metric(metric: str, quota: float) -> str:
    """Metric name of a validation score at an interest quota: ``validation_ndcg_at_200_quota_0_2``."""
    return f"validation_{metric}_quota_{quota:g}".replace(".", "_")


QUOTA_SHOWN = f"recall_at_{NDCG_K}"  # also recorded per quota: the slots the quota reallocates


def choose_interest_quota(
    model: TwoTower, run: _Run, data: TrainingData, params: TrainParams, metric: str
) -> dict[str, float]:
    """The interest quota (index.merge_interests): each of config.INTEREST_QUOTAS scored on the
    validation split with the chosen prior (its counts from before the split, as when its weight was
    chosen); the best (the smallest on ties) is kept where it beats 0, the plain max, by more than
    config.INTEREST_QUOTA_MIN_GAIN. Sets ``model.cfg.interest_quota``; returns the
    scores (and Recall@200 by quota) as metrics."""
    if not params.interest_quota or model.cfg.interests < 2:
        return {}
    if run.validation is None:
        log.warning("train: no validation split, so no interest quota (it is chosen on it)")
        return {}
    served = model.popularity
    if model.cfg.popularity_weight > 0 and data.item_counts is not None:
        model.set_popularity(data.item_ids, data.item_counts)
    split = run.validation
    try:
        by_quota = quota_metrics(
            model, run.table, split.hist, split.true_ids, data.item_ids, run.item_emb, config.INTEREST_QUOTAS
        )
    finally:
        model.popularity = served
    scores = {q: m[f"model_{metric}"] for q, m in by_quota.items()}
    best = max(scores, key=lambda q: (scores[q], -q))
    if scores[best] - scores.get(0.0, float("-inf")) <= config.INTEREST_QUOTA_MIN_GAIN:
        best = 0.0  # the plain max, unless a quota beats it by more than a tie
    model.cfg.interest_quota = best
    log.info("train: interest quota %s (validation %s by quota: %s)", best, metric, scores)
    out = {quota_metric(metric, q): round(v, 6) for q, v in scores.items()}
    if metric != QUOTA_SHOWN:
        out.update(
            {quota_metric(QUOTA_SHOWN, q): round(m[f"model_{QUOTA_SHOWN}"], 6) for q, m in by_quota.items()}
        )
    return {**out, "interest_quota": best}


def _final_metrics(model: TwoTower, run: _Run, data: TrainingData, ground_truth_dir: Path | None) -> dict:
    if data.holdout.empty:
        log.warning("train: the holdout split is empty; no holdout metrics")
        return {}
    return evaluate(
        model,
        run.table,
        torch.from_numpy(data.holdout_hist).to(run.device),
        data.holdout["nm_id"].to_numpy(dtype=np.int64),
        data.item_ids,
        run.item_emb,
        data.train_nm_ids,
        ground_truth_dir=ground_truth_dir,
        holdout_df=data.holdout,
    )


def _lineage(cfg: TwoTowerConfig, data: TrainingData, params: TrainParams, metrics: dict, best: int) -> dict:
    validation_limit, curve_limit = _epoch_sample_limits(params)  # what _prepare_run sampled
    return {
        "encoder": data.encoder.get("encoder"),
        "encoder_checksum": data.encoder.get("encoder_checksum", ""),
        "pooling": data.encoder.get("pooling"),
        "encoder_dim": int(data.table.shape[1]),
        "encoder_max_length": data.encoder.get("max_length"),
        "history_length": cfg.history_length,
        "train_start": params.train_start or None,
        "train_end": params.train_end or None,
        "validation_start": data.validation_start or None,
        "snapshot_date": data.snapshot.get("snapshot_date"),
        "training_items": data.training_items,
        "catalogue_items": int(len(data.item_ids)),
        "train_examples": len(data.train_hist),
        "validation_examples": len(data.val_hist),
        "epoch_validation_rows": _sample_rows(len(data.val_hist), validation_limit),
        "epoch_holdout_rows": _sample_rows(len(data.holdout), curve_limit) if params.eval_every_epoch else 0,
        "epochs": params.epochs,
        "best_epoch": best,
        "loss": params.loss,
        "temperature": params.temperature,
        "logq_correction": params.logq_correction,
        "sampled_negatives": params.sampled_negatives,
        "negative_sampling": params.negative_sampling,
        "interests": cfg.interests,
        "interest_offsets": cfg.interest_offsets,
        "interest_quota": cfg.interest_quota,
        "interest_diversity": params.interest_diversity,
        "lr": params.lr,
        "lr_schedule": params.lr_schedule,
        "seed": params.seed,
        "metrics": {k: round(float(v), 6) for k, v in metrics.items()},
    }


def _finish(
    model, cfg, data, params, history, selection, metrics, start_epoch, started, model_dir, report_path
):
    """Publish the model (the best validation epoch's weights), build the result, write the report."""
    metrics = {**metrics, "best_epoch": float(selection.best_epoch)}
    if selection.best_score > float("-inf"):
        metrics[f"validation_{selection.metric}"] = selection.best_score
    cfg.extra = _lineage(cfg, data, params, metrics, selection.best_epoch)
    _publish_model(model, model_dir)
    result = TrainResult(
        model_dir=model_dir,
        metrics=metrics,
        history=history,
        examples=len(data.train_hist),
        epochs=len(history),
        best_epoch=selection.best_epoch,
        resumed_from_epoch=start_epoch,
        device=str(run_device(model)),
        seconds=time.perf_counter() - started,
        params=asdict(params),
        lineage={
            key: cfg.extra[key]
            for key in (
                "encoder",
                "encoder_checksum",
                "pooling",
                "train_start",
                "train_end",
                "validation_start",
                "snapshot_date",
            )
            + ("training_items", "catalogue_items")
        },
    )
    if report_path is not None:
        from searchrec.report import write_report

        write_report(Path(report_path), result, cfg.extra)
    log.info(
        "train: best epoch %d of %d written to %s in %.1f s",
        result.best_epoch,
        result.epochs,
        model_dir,
        result.seconds,
    )
    return result


def run_device(model: TwoTower) -> torch.device:
    return next(model.parameters()).device


def _publish_model(model: TwoTower, model_dir: Path) -> None:
    """Write config and towers in place as a model artifact (checkpoints kept, completion marker last)."""
    with model_artifact.publishing(model_dir) as path:
        model.save(path)


__all__ = [
    "TrainParams",
    "TrainResult",
    "TrainingData",
    "choose_interest_quota",
    "choose_popularity_weight",
    "latest_checkpoint",
    "load_item_embeddings",
    "load_training_data",
    "popularity_metric",
    "quota_metric",
    "scheduled_lr",
    "train_two_tower",
    "validation_mask",
]
