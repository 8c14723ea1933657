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
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from searchrec import schemas
from searchrec.artifacts import model as model_artifact
from searchrec.errors import SearchrecError
from searchrec.evaluation import RECALL_KS, evaluate
from searchrec.losses import LOSSES, retrieval_loss
from searchrec.model import PADDING_MODES, TwoTower, TwoTowerConfig, gather_history, pick_device

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
ITEMS_FILE = "items.parquet"  # examples_dir: the training items with their counts (schemas.TRAIN_ITEMS)


@dataclass
class TrainParams:
    """Everything that shapes a training run. Defaults: the variant that measured best on the holdout
    (in-batch sampled softmax with logQ correction, masked padding; see tests/benchmarks/results)."""

    epochs: int = 5
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 1e-4
    output_dim: int = 128
    hidden_dim: int = 512
    dropout: float = 0.1
    loss: str = "softmax"  # one of losses.LOSSES
    temperature: float = 0.05  # softmax only
    logq_correction: bool = True  # softmax only: subtract log sampling probability (Yi et al. 2019)
    margin: float | None = None  # multi_margin (default 1.0) / cosine (default 0.0)
    padding: str = "mask"  # "pad": [PAD] encoding in empty slots; "mask": empty slots zeroed
    seed: int = 0
    max_examples: int = 0  # 0: all training examples; else the most recent N
    max_steps_per_epoch: int = 0  # 0: whole epochs; else at most this many batches per epoch
    eval_every_epoch: bool = True  # holdout recall per epoch (for the training curve)
    eval_max_examples: int = 20_000  # per-epoch evaluation on at most this many holdout rows
    keep_checkpoints: int = 3  # the newest N epoch checkpoints are kept
    train_start: str = ""  # lineage only: the training window
    train_end: str = ""
    device: str = ""  # "": CUDA when present, else CPU

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise SearchrecError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.padding not in PADDING_MODES:
            raise SearchrecError(f"padding must be one of {', '.join(PADDING_MODES)}, got {self.padding!r}")
        for name in ("epochs", "output_dim", "hidden_dim", "keep_checkpoints"):
            if int(getattr(self, name)) < 1:
                raise SearchrecError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.batch_size < 2:
            raise SearchrecError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if self.temperature <= 0 or self.lr <= 0:
            raise SearchrecError("temperature and lr must be positive")
        if self.max_examples < 0 or self.max_steps_per_epoch < 0 or self.eval_max_examples < 0:
            raise SearchrecError("max_examples, max_steps_per_epoch and eval_max_examples must be >= 0")

    def fingerprint(self) -> dict:
        """What must match for a checkpoint to be resumed (not epochs: a longer run continues)."""
        skip = {"epochs", "eval_every_epoch", "eval_max_examples", "keep_checkpoints", "device"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, float]
    history: list[dict]  # one row per epoch: epoch, loss, examples, seconds, examples_per_s, recall
    examples: int
    epochs: int
    resumed_from_epoch: int
    device: str
    seconds: float
    params: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)  # encoder, pooling, window, snapshot date, item counts

    def as_metadata(self) -> dict:
        """Flat scalars for the KFP artifact metadata."""
        meta: dict = {
            "train_examples": self.examples,
            "epochs": self.epochs,
            "resumed_from_epoch": self.resumed_from_epoch,
            "device": self.device,
            "train_seconds": round(self.seconds, 2),
            "final_loss": self.history[-1]["loss"] if self.history else None,
            **self.lineage,
        }
        for key in ("loss", "padding", "temperature", "logq_correction", "seed", "batch_size", "lr"):
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
    holdout_hist: np.ndarray  # int32 [h, L]
    holdout: pd.DataFrame  # user_id, order_ts, nm_id
    item_ids: np.ndarray  # int64 [m], sorted: the whole snapshot
    item_emb: np.ndarray  # float32 [m, Di]
    encoder: dict
    snapshot: dict
    training_items: int


# --- inputs ---------------------------------------------------------------------------------------


def _require(folder: Path, names: list[str], what: str) -> None:
    if not Path(folder).is_dir():
        raise SearchrecError(f"{what} folder {folder} does not exist")
    missing = [n for n in names if not (Path(folder) / n).is_file()]
    if missing:
        raise SearchrecError(f"{what} folder {folder} lacks {', '.join(missing)}")


def _load_hist(path: Path, rows: int, table_rows: int, history_length: int | None) -> np.ndarray:
    try:
        hist = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise SearchrecError(f"cannot read {path}: {error}") from None
    if hist.ndim != 2 or not np.issubdtype(hist.dtype, np.integer):
        raise SearchrecError(
            f"{path} must be an integer matrix [rows, history], got {hist.dtype} {hist.shape}"
        )
    if len(hist) != rows:
        raise SearchrecError(f"{path} has {len(hist)} rows but its parquet has {rows}")
    if history_length is not None and hist.shape[1] != history_length:
        raise SearchrecError(f"{path} has {hist.shape[1]} history slots, expected {history_length}")
    if hist.size and (hist.min() < 0 or hist.max() >= table_rows):
        raise SearchrecError(f"{path} holds indices outside the encoding table [0, {table_rows})")
    return np.ascontiguousarray(hist, dtype=np.int32)


def load_item_embeddings(embeddings_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """The snapshot's nm_ids (sorted, unique), their embeddings [m, D] and snapshot.json (if any)."""
    embeddings_dir = Path(embeddings_dir)
    files = sorted(embeddings_dir.glob("*.parquet")) if embeddings_dir.is_dir() else []
    if not files:
        raise SearchrecError(f"embeddings folder {embeddings_dir} holds no *.parquet files")
    ids_parts, emb_parts, dim = [], [], None
    for path in files:
        try:
            table = pq.read_table(path, columns=["nm_id", "embedding"])
        except (OSError, pa.ArrowException, KeyError) as error:
            raise SearchrecError(f"cannot read embeddings {path}: {error}") from None
        emb = table.column("embedding").combine_chunks()
        if not pa.types.is_list(emb.type) and not pa.types.is_large_list(emb.type):
            raise SearchrecError(f"{path}: column embedding must be a list of floats, got {emb.type}")
        if emb.null_count or table.column("nm_id").null_count:
            raise SearchrecError(f"{path}: null nm_id or embedding")
        lengths = pc.list_value_length(emb).to_numpy(zero_copy_only=False)
        if len(lengths) == 0:
            continue
        file_dim = int(lengths[0])
        if file_dim == 0 or (lengths != file_dim).any() or (dim is not None and file_dim != dim):
            raise SearchrecError(
                f"{path}: embeddings must all have one length (got {sorted(set(lengths))[:5]})"
            )
        dim = file_dim
        values = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        emb_parts.append(values.reshape(len(lengths), dim))
        ids_parts.append(table.column("nm_id").to_numpy().astype(np.int64))
    if dim is None:
        raise SearchrecError(f"embeddings folder {embeddings_dir} holds no rows")
    ids = np.concatenate(ids_parts)
    emb = np.concatenate(emb_parts)
    total = len(ids)
    ids, first = np.unique(ids, return_index=True)
    if len(ids) < total:
        log.warning("embeddings: %d duplicate nm_id rows dropped (first kept)", total - len(ids))
    emb = np.ascontiguousarray(emb[first])
    if not np.isfinite(emb).all():
        raise SearchrecError(f"embeddings folder {embeddings_dir} holds NaN or infinite values")
    info_path = embeddings_dir / schemas.SNAPSHOT_INFO
    info = schemas.read_json(info_path) if info_path.is_file() else {}
    return ids, emb, info


def load_training_data(
    encoded_dir: Path, examples_dir: Path, embeddings_dir: Path, *, max_examples: int = 0
) -> TrainingData:
    """Read and check the encode, clean and snapshot folders; map items to snapshot rows."""
    encoded_dir, examples_dir = Path(encoded_dir), Path(examples_dir)
    split_files = [f(s) for s in schemas.TRAIN_SPLITS for f in (schemas.rows_file, schemas.hist_file)]
    _require(encoded_dir, [schemas.TABLE_FILE, schemas.ENCODER_INFO, *split_files], "encoded")
    _require(examples_dir, [ITEMS_FILE], "examples")
    encoder = schemas.read_json(encoded_dir / schemas.ENCODER_INFO)
    try:
        table = np.load(encoded_dir / schemas.TABLE_FILE, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise SearchrecError(f"cannot read {encoded_dir / schemas.TABLE_FILE}: {error}") from None
    if table.ndim != 2 or len(table) < 1 or table.shape[1] < 1:
        raise SearchrecError(f"{schemas.TABLE_FILE} must be a matrix [queries + 1, dim], got {table.shape}")
    if "dim" in encoder and int(encoder["dim"]) != table.shape[1]:
        raise SearchrecError(
            f"{schemas.TABLE_FILE} has dimension {table.shape[1]} but {schemas.ENCODER_INFO} says {encoder['dim']}"
        )
    table = np.ascontiguousarray(table, dtype=np.float32)

    def rows(split: str) -> pd.DataFrame:
        path = encoded_dir / schemas.rows_file(split)
        try:
            df = pd.read_parquet(path, columns=["user_id", "order_ts", "nm_id"])
        except (OSError, ValueError, KeyError, pa.ArrowException) as error:
            raise SearchrecError(f"cannot read {path}: {str(error).splitlines()[0]}") from None
        return df.reset_index(drop=True)

    train = rows("train")
    if train.empty:
        raise SearchrecError(f"the train split in {encoded_dir} is empty: nothing to train on")
    train_hist = _load_hist(encoded_dir / schemas.hist_file("train"), len(train), len(table), None)
    holdout = rows("holdout")
    holdout_hist = _load_hist(
        encoded_dir / schemas.hist_file("holdout"), len(holdout), len(table), train_hist.shape[1]
    )
    try:
        items = pd.read_parquet(examples_dir / ITEMS_FILE, columns=["nm_id"])
    except (OSError, ValueError, KeyError, pa.ArrowException) as error:
        raise SearchrecError(
            f"cannot read {examples_dir / ITEMS_FILE}: {str(error).splitlines()[0]}"
        ) from None
    training_items = items["nm_id"].to_numpy(dtype=np.int64)
    if len(training_items) == 0:
        raise SearchrecError(f"{examples_dir / ITEMS_FILE} lists no training items")

    item_ids, item_emb, snapshot = load_item_embeddings(Path(embeddings_dir))
    nm = train["nm_id"].to_numpy(dtype=np.int64)
    pos = np.minimum(np.searchsorted(item_ids, nm), len(item_ids) - 1)
    keep = (item_ids[pos] == nm) & np.isin(nm, training_items)
    if not keep.all():
        log.warning(
            "train: %d of %d examples dropped (item not a training item or not in the snapshot)",
            int((~keep).sum()),
            len(nm),
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
    if len(index) < len(nm):  # otherwise no copies: 10M examples are 200 MB of indices, kept once
        train_hist, pos, nm = np.ascontiguousarray(train_hist[index]), pos[index], nm[index]
    return TrainingData(
        table=table,
        train_hist=train_hist,
        train_rows=pos.astype(np.int64, copy=False),
        train_nm_ids=nm,
        holdout_hist=holdout_hist,
        holdout=holdout,
        item_ids=item_ids,
        item_emb=item_emb,
        encoder=encoder,
        snapshot=snapshot,
        training_items=int(len(np.unique(training_items))),
    )


# --- checkpoints ----------------------------------------------------------------------------------


def _checkpoint_paths(model_dir: Path, epoch: int) -> tuple[Path, Path]:
    base = Path(model_dir) / CHECKPOINTS_DIR / f"epoch-{epoch:04d}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


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
    _atomic_write(tensors_path, lambda p: save_file(tensors, str(p)))
    meta = {**state, "epoch": epoch, "optimizer_param_groups": opt_state["param_groups"]}
    _atomic_write(json_path, lambda p: p.write_text(json.dumps(meta, indent=1, default=str)))
    for old in sorted((Path(model_dir) / CHECKPOINTS_DIR).glob("epoch-*.json"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return json_path


def latest_checkpoint(model_dir: Path) -> int:
    """The newest complete checkpoint epoch in model_dir, 0 when there is none."""
    folder = Path(model_dir) / CHECKPOINTS_DIR
    epochs = []
    for path in folder.glob("epoch-*.json") if folder.is_dir() else []:
        try:
            epoch = int(path.stem.split("-", 1)[1])
        except ValueError:
            continue
        if path.with_suffix(".safetensors").is_file():
            epochs.append(epoch)
    return max(epochs, default=0)


def load_checkpoint(model_dir: Path, epoch: int, model: TwoTower, optimizer: torch.optim.Optimizer) -> dict:
    tensors_path, json_path = _checkpoint_paths(model_dir, epoch)
    meta = schemas.read_json(json_path)
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
    )


def _check_resumable(
    meta: dict, cfg: TwoTowerConfig, params: TrainParams, n_examples: int, model_dir: Path
) -> None:
    saved = meta.get("config", {})
    for name in ("query_dim", "item_dim", "history_length", "output_dim", "hidden_dim", "padding"):
        if saved.get(name) != getattr(cfg, name):
            raise SearchrecError(
                f"checkpoint in {model_dir} has {name}={saved.get(name)!r} but the inputs/params give "
                f"{getattr(cfg, name)!r}; use an empty model folder"
            )
    if meta.get("fingerprint") != json.loads(json.dumps(params.fingerprint())):
        raise SearchrecError(
            f"checkpoint in {model_dir} was trained with other parameters; use an empty model folder"
        )
    if meta.get("train_examples") != n_examples:
        raise SearchrecError(
            f"checkpoint in {model_dir} saw {meta.get('train_examples')} training examples, now {n_examples}; "
            "use an empty model folder"
        )


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + epoch) % (2**63)


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
    """Train the two towers on the encode output; write the model folder (and the HTML report)."""
    params = params or TrainParams()
    params.validate()
    started = time.perf_counter()
    model_dir = Path(model_dir)
    data = load_training_data(encoded_dir, examples_dir, embeddings_dir, max_examples=params.max_examples)
    device = pick_device(params.device or None)
    n = len(data.train_hist)
    log.info(
        "train: %d examples, %d holdout, table %s, %d snapshot items (dim %d), %d training items, device %s",
        n,
        len(data.holdout),
        data.table.shape,
        len(data.item_ids),
        data.item_emb.shape[1],
        data.training_items,
        device,
    )

    # Everything the batches index lives on the device: table, indices, item matrix, item rows.
    table = torch.from_numpy(data.table).to(device)
    hist = torch.from_numpy(data.train_hist).to(device)
    rows = torch.from_numpy(data.train_rows).to(device)
    item_emb = torch.from_numpy(data.item_emb).to(device)
    counts = np.bincount(data.train_rows, minlength=len(data.item_ids)).astype(np.float64)
    log_q = torch.from_numpy(np.log(np.maximum(counts, 1.0) / counts.sum()).astype(np.float32)).to(device)
    holdout_hist = torch.from_numpy(data.holdout_hist).to(device)
    holdout_true = data.holdout["nm_id"].to_numpy(dtype=np.int64)

    cfg = _model_config(data, params)
    torch.manual_seed(int(params.seed))
    model = TwoTower(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)

    history: list[dict] = []
    start_epoch = latest_checkpoint(model_dir)
    if start_epoch:
        meta = schemas.read_json(_checkpoint_paths(model_dir, start_epoch)[1])
        _check_resumable(meta, cfg, params, n, model_dir)
        if start_epoch > params.epochs:
            raise SearchrecError(
                f"{model_dir} holds a checkpoint of epoch {start_epoch}, beyond epochs={params.epochs}"
            )
        load_checkpoint(model_dir, start_epoch, model, optimizer)
        history = list(meta.get("history", []))
        log.info("train: resumed from checkpoint epoch %d in %s", start_epoch, model_dir)

    eval_idx = np.arange(len(holdout_true))
    if params.eval_max_examples and len(eval_idx) > params.eval_max_examples:
        eval_idx = np.sort(
            np.random.default_rng(params.seed).choice(eval_idx, params.eval_max_examples, False)
        )

    steps = math.ceil(n / params.batch_size)
    if n % params.batch_size == 1:
        steps -= 1  # a batch of one has no negatives
    if params.max_steps_per_epoch:
        steps = min(steps, params.max_steps_per_epoch)
    if steps < 1:
        raise SearchrecError(f"{n} training example(s): need at least 2 for in-batch negatives")
    state_base = {
        "fingerprint": params.fingerprint(),
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
        "train_examples": n,
    }
    for epoch in range(start_epoch + 1, params.epochs + 1):
        model.train()
        generator = torch.Generator().manual_seed(_epoch_seed(params.seed, epoch))
        torch.manual_seed(_epoch_seed(params.seed, epoch))  # dropout: same stream on a resumed run
        perm = torch.randperm(n, generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        seen = 0
        t0 = time.perf_counter()
        bar = tqdm(
            range(steps), desc=f"epoch {epoch}/{params.epochs}", unit="batch", mininterval=5, leave=False
        )
        for step in bar:
            batch = perm[step * params.batch_size : (step + 1) * params.batch_size]
            item_rows = rows[batch]
            history_t, mask = gather_history(table, hist[batch])
            queries = model.query_tower(history_t, mask)
            items = model.item_tower(item_emb[item_rows])
            loss = retrieval_loss(
                params.loss,
                queries,
                items,
                item_rows,
                temperature=params.temperature,
                log_q=log_q[item_rows] if params.logq_correction else None,
                margin=params.margin,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(batch)
            seen += len(batch)
            if step % 100 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        epoch_loss = float(loss_sum) / max(seen, 1)
        if not math.isfinite(epoch_loss):
            raise SearchrecError(f"training diverged at epoch {epoch} (loss {epoch_loss}); lower lr")
        row = {
            "epoch": epoch,
            "loss": round(epoch_loss, 6),
            "examples": seen,
            "seconds": round(seconds, 3),
            "examples_per_s": round(seen / seconds, 1) if seconds > 0 else None,
        }
        if params.eval_every_epoch and len(eval_idx):
            m = evaluate(
                model,
                table,
                holdout_hist[torch.from_numpy(eval_idx).to(device)],
                holdout_true[eval_idx],
                data.item_ids,
                item_emb,
                data.train_nm_ids,
            )
            row.update({f"holdout_recall_at_{k}": round(m[f"model_recall_at_{k}"], 6) for k in RECALL_KS})
        history.append(row)
        log.info(
            "epoch %d/%d: loss %.4f, %d examples in %.1f s (%.0f examples/s)%s",
            epoch,
            params.epochs,
            epoch_loss,
            seen,
            seconds,
            row["examples_per_s"] or 0,
            f", holdout recall@200 {row['holdout_recall_at_200']:.4f}"
            if "holdout_recall_at_200" in row
            else "",
        )
        save_checkpoint(
            model_dir, epoch, model, optimizer, {**state_base, "history": history}, params.keep_checkpoints
        )

    metrics: dict[str, float] = {}
    if len(holdout_true):
        metrics = evaluate(
            model,
            table,
            holdout_hist,
            holdout_true,
            data.item_ids,
            item_emb,
            data.train_nm_ids,
            ground_truth_dir=ground_truth_dir,
            holdout_df=data.holdout,
        )
    else:
        log.warning("train: the holdout split is empty; no holdout metrics")

    cfg.extra = {
        "encoder": data.encoder.get("encoder"),
        "pooling": data.encoder.get("pooling"),
        "encoder_dim": int(data.table.shape[1]),
        "encoder_max_length": data.encoder.get("max_length"),
        "history_length": cfg.history_length,
        "train_start": params.train_start or None,
        "train_end": params.train_end or None,
        "snapshot_date": data.snapshot.get("snapshot_date"),
        "training_items": data.training_items,
        "catalogue_items": int(len(data.item_ids)),
        "train_examples": n,
        "epochs": params.epochs,
        "loss": params.loss,
        "temperature": params.temperature,
        "logq_correction": params.logq_correction,
        "seed": params.seed,
        "metrics": {k: round(float(v), 6) for k, v in metrics.items()},
    }
    _publish_model(model, model_dir)
    result = TrainResult(
        model_dir=model_dir,
        metrics=metrics,
        history=history,
        examples=n,
        epochs=params.epochs,
        resumed_from_epoch=start_epoch,
        device=str(device),
        seconds=time.perf_counter() - started,
        params=asdict(params),
        lineage={
            key: cfg.extra[key]
            for key in ("encoder", "pooling", "train_start", "train_end", "snapshot_date")
            + ("training_items", "catalogue_items")
        },
    )
    if report_path is not None:
        from searchrec.report import write_report

        write_report(Path(report_path), result, cfg.extra)
    log.info("train: model written to %s in %.1f s", model_dir, result.seconds)
    return result


def _publish_model(model: TwoTower, model_dir: Path) -> None:
    """Write config and towers in place as a model artifact (checkpoints kept, completion marker last)."""
    with model_artifact.publishing(model_dir) as path:
        model.save(path)


# --- comparison of objectives ---------------------------------------------------------------------

VARIANTS: dict[str, dict] = {
    "multi_margin/pad (original)": {"loss": "multi_margin", "padding": "pad"},
    "cosine/pad": {"loss": "cosine", "padding": "pad"},
    "softmax/pad": {"loss": "softmax", "padding": "pad", "logq_correction": False},
    "softmax+logQ/pad": {"loss": "softmax", "padding": "pad", "logq_correction": True},
    "softmax/mask": {"loss": "softmax", "padding": "mask", "logq_correction": False},
    "softmax+logQ/mask": {"loss": "softmax", "padding": "mask", "logq_correction": True},
    "multi_margin/mask": {"loss": "multi_margin", "padding": "mask"},
}


def compare_variants(
    encoded_dir: Path,
    examples_dir: Path,
    embeddings_dir: Path,
    work_dir: Path,
    *,
    base: TrainParams | None = None,
    variants: dict[str, dict] | None = None,
) -> list[dict]:
    """Train each variant on the same data and seed; one row of holdout metrics per variant."""
    base = base or TrainParams()
    out = []
    for i, (name, overrides) in enumerate((variants or VARIANTS).items()):
        params = replace(base, **overrides)
        result = train_two_tower(
            encoded_dir, examples_dir, embeddings_dir, Path(work_dir) / f"variant-{i}", params=params
        )
        out.append(
            {
                "variant": name,
                **{
                    k: v
                    for k, v in result.metrics.items()
                    if k.startswith(("model_", "popularity_recall_at_200"))
                },
                "final_loss": result.history[-1]["loss"],
                "seconds": round(result.seconds, 1),
            }
        )
    return out


def variants_markdown(rows: list[dict]) -> str:
    cols = [
        "model_recall_at_10",
        "model_recall_at_50",
        "model_recall_at_200",
        "model_ndcg_at_200",
        "model_mrr",
    ]
    lines = [
        "| variant | "
        + " | ".join(c.removeprefix("model_") for c in cols)
        + " | popularity recall@200 | seconds |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for r in rows:
        vals = " | ".join(f"{r.get(c, float('nan')):.4f}" for c in cols)
        lines.append(
            f"| {r['variant']} | {vals} | {r.get('popularity_recall_at_200', float('nan')):.4f} | {r['seconds']} |"
        )
    return "\n".join(lines)


__all__ = [
    "TrainParams",
    "TrainResult",
    "TrainingData",
    "compare_variants",
    "latest_checkpoint",
    "load_item_embeddings",
    "load_training_data",
    "train_two_tower",
    "variants_markdown",
]
