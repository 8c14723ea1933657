"""The two-tower model: a query tower over HISTORY_LENGTH query encodings, an item tower over the
bert4rec item embedding, both ending L2-normalised in one space (so inner product = cosine).

Stored as a folder: config.json plus one safetensors file per tower; loading never unpickles.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from searchrec.artifacts import model as model_artifact
from searchrec.errors import SearchrecError

PADDING_MODES = ("pad", "mask")
QUERY_TOWERS = ("concat", "attention")
ITEM_TOWERS = ("mlp", "residual")


@dataclass
class TwoTowerConfig:
    query_dim: int  # encoder output dimension (rubert-tiny2: 312)
    item_dim: int  # bert4rec embedding dimension of the snapshot
    history_length: int = 5
    output_dim: int = 128
    hidden_dim: int = 512
    dropout: float = 0.1
    padding: str = "pad"  # "pad": padded slots hold the [PAD] encoding; "mask": padded slots are zeroed
    # "concat": one MLP over the concatenated slots (the original); "attention": a shared per-query
    # projection plus position (recency) embeddings, pooled by attention over the real queries
    query_tower: str = "concat"
    # "mlp": one MLP over the snapshot embedding (the original); "residual": a linear map initialised to
    # keep the snapshot's cosine geometry plus an MLP whose output starts at zero, so items rarely or
    # never seen as positives stay where the snapshot puts them
    item_tower: str = "mlp"
    attention_heads: int = 1  # attention query tower: pooling heads, each its own weights over the queries
    # query vectors per user (multi-interest, ComiRec-SA style): the user's score of an item is the max over
    # its interest vectors; 1 = one vector (the original); serving searches each and merges by max score
    interests: int = 1
    # with interests > 1: each interest vector also carries a learned offset (how much this user's history
    # backs that interest) added to its scores, so a weak interest's items rank below a strong one's; one
    # extra dimension (the query's offset against a constant 1 on the item side); no effect at interests=1
    interest_offsets: bool = False
    # weight of the popularity prior: the served score is cos(query, item) + popularity_weight * log(1 +
    # the item's training purchases); 0 = none. Carried as one extra vector dimension (the query's is the
    # weight, the item's its log count from popularity.safetensors), so faiss inner product serves it.
    popularity_weight: float = 0.0
    # with interests > 1: the share of a served top-k list held for the interests' own best items, each
    # interest floor(interest_quota * k / interests) of them, the rest by the max score
    # (index.merge_interests); 0 = the plain max (also what a model saved before the setting serves)
    interest_quota: float = 0.0
    # lineage, filled by train: encoder id/pooling, training window, item count, metrics ...
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (
            "query_dim",
            "item_dim",
            "history_length",
            "output_dim",
            "hidden_dim",
            "attention_heads",
            "interests",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SearchrecError(f"model config: {name} must be a positive integer, got {value!r}")
        if not 0.0 <= float(self.popularity_weight) < 1e3:
            raise SearchrecError(
                f"model config: popularity_weight must be >= 0, got {self.popularity_weight!r}"
            )
        if not 0.0 <= float(self.interest_quota) <= 1.0:
            raise SearchrecError(
                f"model config: interest_quota must be within [0, 1], got {self.interest_quota!r}"
            )
        if not isinstance(self.interest_offsets, bool):
            raise SearchrecError(
                f"model config: interest_offsets must be true or false, got {self.interest_offsets!r}"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise SearchrecError(f"model config: dropout must be in [0, 1), got {self.dropout!r}")
        if self.padding not in PADDING_MODES:
            raise SearchrecError(
                f"model config: padding must be one of {', '.join(PADDING_MODES)}, got {self.padding!r}"
            )
        if self.item_tower not in ITEM_TOWERS:
            raise SearchrecError(
                f"model config: item_tower must be one of {', '.join(ITEM_TOWERS)}, got {self.item_tower!r}"
            )
        if self.query_tower not in QUERY_TOWERS:
            raise SearchrecError(
                f"model config: query_tower must be one of {', '.join(QUERY_TOWERS)}, got {self.query_tower!r}"
            )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False, default=str))

    @classmethod
    def load(cls, path: Path) -> TwoTowerConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise SearchrecError(f"cannot read model config {path}: {error}") from None
        if not isinstance(data, dict):
            raise SearchrecError(f"model config {path} is not a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SearchrecError(f"model config {path} has unknown fields: {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as error:
            raise SearchrecError(f"model config {path} is incomplete: {error}") from None


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.LayerNorm(hidden_dim),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_dim, out_dim),
    )


def _check_history(history: torch.Tensor, length: int, dim: int) -> None:
    if history.dim() != 3 or history.shape[1:] != (length, dim):
        raise SearchrecError(f"query tower expects [B, {length}, {dim}] histories, got {list(history.shape)}")


def _unit_interests(out: torch.Tensor, interests: int, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """[B, K * D] -> unit vectors: [B, D] for one interest (the original shape), else [B, K, D]; with
    ``offsets`` [B, K], each interest's offset appended: [B, K, D + 1]."""
    if interests > 1:
        out = out.view(len(out), interests, -1)
    out = nn.functional.normalize(out, dim=-1)
    return out if offsets is None else torch.cat([out, offsets.view(len(out), -1, 1)], dim=-1)


def _offset_layer(cfg: TwoTowerConfig, in_dim: int) -> nn.Linear | None:
    """The interests' offsets (zero at initialisation: the plain max over interests), when configured."""
    if cfg.interests < 2 or not cfg.interest_offsets:
        return None
    layer = nn.Linear(in_dim, 1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class QueryTower(nn.Module):
    """[B, L, Dq] query encodings (+ [B, L] bool mask of real queries) -> [B, out] unit vectors
    ([B, K, out] with K = ``interests`` > 1: the MLP's last layer outputs K vectors).

    padding="pad": the padded slots hold the [PAD] encoding (table row 0) and the mask is ignored.
    padding="mask": the padded slots are zeroed, so the [PAD] encoding never reaches the network.
    """

    def __init__(self, cfg: TwoTowerConfig):
        super().__init__()
        self.padding = cfg.padding
        self.history_length = cfg.history_length
        self.query_dim = cfg.query_dim
        self.interests = cfg.interests
        self.mlp = _mlp(
            cfg.history_length * cfg.query_dim, cfg.hidden_dim, cfg.output_dim * cfg.interests, cfg.dropout
        )
        self.offset = _offset_layer(cfg, cfg.output_dim)

    def forward(self, history: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_history(history, self.history_length, self.query_dim)
        if self.padding == "mask" and mask is not None:
            history = history * mask.unsqueeze(-1).to(history.dtype)
        out = self.mlp(history.flatten(1))
        offsets = None if self.offset is None else self.offset(out.view(len(out), self.interests, -1))
        return _unit_interests(out, self.interests, offsets)


class AttentionQueryTower(nn.Module):
    """[B, L, Dq] (+ [B, L] mask) -> [B, out] unit vectors: each query through one shared projection,
    plus a learned embedding of its position (slot L-1 is the most recent query), then attention
    pooling over the real queries (padded slots get no weight) and an output MLP.

    ``interests`` K > 1 (ComiRec-SA): K sets of ``attention_heads`` pooling heads, each set through the
    shared output MLP to its own unit vector: [B, K, out]. K = 1 is the single-vector tower, weight for
    weight (the pooling layer's heads are laid out interest-major, so its first K=1 slice is today's)."""

    def __init__(self, cfg: TwoTowerConfig):
        super().__init__()
        self.padding = cfg.padding
        self.history_length = cfg.history_length
        self.query_dim = cfg.query_dim
        self.project = nn.Sequential(nn.Linear(cfg.query_dim, cfg.hidden_dim), nn.LayerNorm(cfg.hidden_dim))
        self.position = nn.Parameter(torch.zeros(cfg.history_length, cfg.hidden_dim))
        self.heads = cfg.attention_heads
        self.interests = cfg.interests
        self.attend = nn.Linear(cfg.hidden_dim, cfg.attention_heads * cfg.interests)
        self.out = _mlp(cfg.hidden_dim * cfg.attention_heads, cfg.hidden_dim, cfg.output_dim, cfg.dropout)
        self.offset = _offset_layer(cfg, cfg.hidden_dim * cfg.attention_heads)

    def forward(self, history: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        _check_history(history, self.history_length, self.query_dim)
        h = nn.functional.gelu(self.project(history) + self.position)
        scores = self.attend(h)  # [B, L, heads]
        if mask is not None:
            real = mask | ~mask.any(dim=1, keepdim=True)  # a history without queries: attend to all
            scores = scores.masked_fill(~real.unsqueeze(-1), float("-inf"))
        pooled = torch.einsum("blk,bld->bkd", torch.softmax(scores, dim=1), h)  # [B, K * heads, hidden]
        pooled = pooled.reshape(len(h) * self.interests, -1)  # each interest's heads side by side
        offsets = None if self.offset is None else self.offset(pooled)
        return _unit_interests(self.out(pooled).view(len(h), -1), self.interests, offsets)


def offset_dims(cfg: TwoTowerConfig) -> int:
    """1 where the interests carry offsets (an extra dimension of both towers' outputs), else 0."""
    return 1 if cfg.interests > 1 and cfg.interest_offsets else 0


class ItemTower(nn.Module):
    """[B, Di] item embeddings -> [B, out] unit vectors.

    ``item_tower="residual"``: ``linear(x) + mlp(x)``. The linear map starts with orthonormal columns
    (Di <= out), so at initialisation cosine similarity between items is the snapshot's, and the MLP's
    last layer starts at zero; training bends the geometry only as far as the positives ask, so an item
    seen rarely (or never) as a positive moves with its snapshot neighbours.
    """

    def __init__(self, cfg: TwoTowerConfig):
        super().__init__()
        self.item_dim = cfg.item_dim
        self.offset_dim = offset_dims(cfg)  # a constant 1 after the unit vector: the queries' offsets
        self.mlp = _mlp(cfg.item_dim, cfg.hidden_dim, cfg.output_dim, cfg.dropout)
        self.linear = None
        if cfg.item_tower == "residual":
            self.linear = nn.Linear(cfg.item_dim, cfg.output_dim, bias=False)
            nn.init.orthogonal_(self.linear.weight)
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        if items.dim() != 2 or items.shape[1] != self.item_dim:
            raise SearchrecError(
                f"item tower expects [B, {self.item_dim}] embeddings, got {list(items.shape)}"
            )
        out = self.mlp(items)
        if self.linear is not None:
            out = out + self.linear(items)
        out = nn.functional.normalize(out, dim=-1)
        return torch.cat([out, out.new_ones((len(out), 1))], dim=1) if self.offset_dim else out


class TwoTower(nn.Module):
    def __init__(self, cfg: TwoTowerConfig):
        super().__init__()
        self.cfg = cfg
        self.query_tower = AttentionQueryTower(cfg) if cfg.query_tower == "attention" else QueryTower(cfg)
        self.item_tower = ItemTower(cfg)
        # the popularity prior's item side: nm_ids (sorted) and log(1 + training purchases) of each
        self.popularity: tuple[np.ndarray, np.ndarray] | None = None

    def forward(
        self, history: torch.Tensor, mask: torch.Tensor | None, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query_tower(history, mask), self.item_tower(items)

    @property
    def vector_dim(self) -> int:
        """Dimension of the served vectors: the towers' output (plus one for interest offsets), plus one
        for the popularity prior."""
        return self.cfg.output_dim + offset_dims(self.cfg) + (1 if self.cfg.popularity_weight > 0 else 0)

    def set_popularity(self, nm_ids: np.ndarray, counts: np.ndarray) -> None:
        """The prior's item side from training purchase counts per nm_id (items absent count 0)."""
        nm_ids = np.asarray(nm_ids, dtype=np.int64)
        order = np.argsort(nm_ids, kind="stable")
        feature = np.log1p(np.maximum(np.asarray(counts, dtype=np.float64), 0.0)).astype(np.float32)
        self.popularity = (nm_ids[order], feature[order])

    def popularity_feature(self, nm_ids: np.ndarray) -> np.ndarray:
        """log(1 + training purchases) of each nm_id; 0 (the floor) for an item not counted."""
        nm_ids = np.asarray(nm_ids, dtype=np.int64)
        if self.popularity is None or not len(self.popularity[0]):
            return np.zeros(len(nm_ids), dtype=np.float32)
        ids, feature = self.popularity
        pos = np.minimum(np.searchsorted(ids, nm_ids), len(ids) - 1)
        return np.where(ids[pos] == nm_ids, feature[pos], 0.0).astype(np.float32)

    def query_vectors(self, history: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """What is searched with: the query tower's unit vector (+ the prior's weight as the last value),
        [B, D(+1)]; [B, K, D(+1)(+1)] with K > 1 interests (searched each, merged by the max score; the
        interest's offset after the unit vector where configured)."""
        q = self.query_tower(history, mask)
        if self.cfg.popularity_weight <= 0:
            return q
        return torch.cat([q, q.new_full((*q.shape[:-1], 1), float(self.cfg.popularity_weight))], dim=-1)

    def item_vectors(self, items: torch.Tensor, nm_ids: np.ndarray | None = None) -> torch.Tensor:
        """What is indexed: the item tower's unit vector (+ the item's log popularity as the last value)."""
        v = self.item_tower(items)
        if self.cfg.popularity_weight <= 0:
            return v
        if nm_ids is None or len(nm_ids) != len(v):
            raise SearchrecError("the popularity prior needs the nm_id of every item vector")
        feature = torch.from_numpy(self.popularity_feature(nm_ids)).to(v.device, v.dtype)
        return torch.cat([v, feature.unsqueeze(1)], dim=1)

    def encode_indices(self, table: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
        """Query vectors straight from a (device) embedding table and int history indices [B, L]."""
        history, mask = gather_history(table, hist)
        return self.query_tower(history, mask)

    def save(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.save(model_dir / model_artifact.CONFIG_FILE)
        save_file(_cpu_state(self.query_tower), str(model_dir / model_artifact.QUERY_TOWER_FILE))
        save_file(_cpu_state(self.item_tower), str(model_dir / model_artifact.ITEM_TOWER_FILE))
        if self.cfg.popularity_weight > 0:
            ids, feature = self.popularity or (np.zeros(0, np.int64), np.zeros(0, np.float32))
            tensors = {"nm_id": torch.from_numpy(ids.copy()), "log_count": torch.from_numpy(feature.copy())}
            save_file(tensors, str(model_dir / model_artifact.POPULARITY_FILE))

    @classmethod
    def load(cls, model_dir: Path, device: str | torch.device = "cpu") -> TwoTower:
        model_dir = Path(model_dir)
        cfg = (
            TwoTowerConfig.load(model_dir / model_artifact.CONFIG_FILE)
            if (model_dir / model_artifact.CONFIG_FILE).is_file()
            else None
        )
        wanted = [model_artifact.CONFIG_FILE, model_artifact.QUERY_TOWER_FILE, model_artifact.ITEM_TOWER_FILE]
        if cfg is not None and cfg.popularity_weight > 0:
            wanted.append(model_artifact.POPULARITY_FILE)
        missing = [f for f in wanted if not (model_dir / f).is_file()]
        if missing:
            raise SearchrecError(f"model folder {model_dir} lacks {', '.join(missing)}")
        model = cls(cfg)
        for name, tower in (
            (model_artifact.QUERY_TOWER_FILE, model.query_tower),
            (model_artifact.ITEM_TOWER_FILE, model.item_tower),
        ):
            try:
                tower.load_state_dict(load_file(str(model_dir / name)))
            except (RuntimeError, OSError, ValueError) as error:
                raise SearchrecError(
                    f"{model_dir / name} does not match config.json: {_first(error)}"
                ) from None
        if cfg.popularity_weight > 0:
            model.popularity = _load_popularity(model_dir / model_artifact.POPULARITY_FILE)
        return model.to(device).eval()


def _first(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _load_popularity(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        tensors = load_file(str(path))
        ids, feature = tensors["nm_id"].numpy().astype(np.int64), tensors["log_count"].numpy()
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        raise SearchrecError(f"cannot read the popularity prior {path}: {_first(error)}") from None
    if ids.shape != feature.shape or ids.ndim != 1 or (len(ids) > 1 and (np.diff(ids) <= 0).any()):
        raise SearchrecError(f"{path} must hold sorted unique nm_id and log_count of one length")
    return ids, feature.astype(np.float32)


def gather_history(table: torch.Tensor, hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Look up history indices [B, L] (int32/int64, 0 = padding) in an encoding table [n+1, Dq].

    Both tensors should live on the same device; the result is [B, L, Dq] plus the [B, L] bool mask of
    real (non-padding) slots. Only the batch is materialised, never all examples.
    """
    flat = hist.reshape(-1)
    if flat.dtype not in (torch.int32, torch.int64):
        flat = flat.long()
    history = torch.index_select(table, 0, flat).view(*hist.shape, table.shape[1])
    return history, hist != 0


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
