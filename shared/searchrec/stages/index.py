"""Index stage: the item tower over every item of the embeddings snapshot, then a faiss index on them.

Output folder (``searchrec.artifacts.index``):

    items.faiss   the CPU faiss index (``faiss.write_index``); row i is the item ``nm_ids[i]``
    nm_ids.npy    int64 [n]
    index.json    kind, n, dim, parameters, measured recall@k, snapshot date, model digests, timings

By default the index is exact (``IndexFlatIP`` on the unit vectors of the item tower, so inner product
is cosine). An approximate index (IVF-Flat or HNSW) is built when asked for or, with ``kind="auto"``,
above ``auto_threshold`` items; its recall@k against exact search is measured at build time on a
sample of item vectors used as queries (or on real query vectors / encoded histories when given),
its search parameter (IVF ``nprobe``, HNSW ``efSearch``) is the cheapest one that reaches
``min_recall``, and the build fails if none does. The GPU is used for the item tower (torch) and for
faiss when present; the saved index is always the CPU one, so infer runs on either.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from searchrec import config
from searchrec.artifacts import encoded, examples, snapshot
from searchrec.artifacts import index as index_artifact
from searchrec.artifacts import model as model_artifact
from searchrec.errors import SearchrecError
from searchrec.model import TwoTower

log = logging.getLogger(__name__)

KINDS = ("flat", "ivf", "hnsw", "auto")
GPU_MAX_K = 2048  # faiss GPU k-selection limit (k and nprobe)
IVF_MIN_POINTS_PER_CENTROID = 39  # faiss warns below this many training points per list
IVF_TRAIN_POINTS_PER_CENTROID = 64  # k-means sample per list: bounded, whatever the catalogue
IVF_KMEANS_ITERATIONS = 10
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
SEED = 1234
# faiss' flat search runs sgemm on blocks of 4096 queries x 1024 items by default; blocks of 16384 items
# made exact top-200 search 2-2.4x faster on CPU (tests/benchmarks/results/search.md), for a 256 MB block.
CPU_BLAS_DATABASE_BLOCK = 16384


# --- shared helpers (also used by infer) --------------------------------------------------------
@dataclass(frozen=True)
class Devices:
    """Where the towers run (torch) and whether faiss searches on the GPU."""

    torch: torch.device
    faiss_gpu: bool

    @property
    def name(self) -> str:
        return "gpu" if self.torch.type == "cuda" or self.faiss_gpu else "cpu"


def resolve_devices(device: str = "auto") -> Devices:
    """``auto``: the GPU where torch / faiss see one, else the CPU; ``cpu``: never the GPU; ``cuda``: require it."""
    faiss_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "auto":
        return Devices(torch.device("cuda" if torch.cuda.is_available() else "cpu"), faiss_gpus > 0)
    if device == "cpu":
        return Devices(torch.device("cpu"), False)
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SearchrecError("device 'cuda' asked for, but torch sees no GPU")
        return Devices(torch.device("cuda"), faiss_gpus > 0)
    raise SearchrecError(f"unknown device {device!r}; expected auto, cpu or cuda")


class Searcher:
    """Top-k inner-product search over a CPU faiss index; on a faiss GPU copy of it where possible.

    Both paths return the same neighbours (up to float rounding of the scores). The GPU copy is used
    for k <= 2048 (faiss' GPU selection limit) and for index types faiss has on the GPU (flat, IVF);
    HNSW and larger k run on the CPU index.
    """

    def __init__(self, index: faiss.Index, use_gpu: bool, ef_search: int | None = None):
        self.cpu = index
        self.ef_search = ef_search
        self.gpu = None
        self._resources = None
        if use_gpu and not isinstance(index, faiss.IndexHNSW):
            self._resources = faiss.StandardGpuResources()
            self.gpu = faiss.index_cpu_to_gpu(self._resources, 0, index)
            if isinstance(index, faiss.IndexIVF):
                faiss.GpuParameterSpace().set_index_parameter(self.gpu, "nprobe", index.nprobe)

    @property
    def on_gpu(self) -> bool:
        return self.gpu is not None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores float32 [B, k] (descending) and index rows int64 [B, k] (-1 where fewer were found)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.gpu is not None and k <= GPU_MAX_K:
            return self.gpu.search(queries, k)
        if isinstance(self.cpu, faiss.IndexHNSW):
            # efSearch bounds the candidate list: never below k, else fewer than k come back
            self.cpu.hnsw.efSearch = max(self.ef_search or 0, k)
        with cpu_blas_blocks():
            return self.cpu.search(queries, k)


def interest_share(quota: float, k: int, interests: int) -> int:
    """Slots of a top-k list held for each interest's own best items: floor(quota * k / interests); 0 for
    a single interest (nothing to share)."""
    return int(math.floor(float(quota) * k / interests + 1e-9)) if interests > 1 else 0


def search_users(
    searcher: Searcher,
    queries: np.ndarray,
    k: int,
    *,
    quota: float = 0.0,
    depth: int | None = None,
    drop: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per user from query vectors [U, D] or, multi-interest, [U, K, D]: one search over all
    U * K vectors, then per user the union of its K lists ranked by the max score over its interests
    (what training optimises). The exact top-k by that max is always within the union of the
    per-interest top-k, so over an exact index the merge is exact. ``quota`` > 0: each interest's own
    best ``interest_share`` items are kept whatever their max score (``merge_interests``). ``depth``
    (>= k): how deep each vector is searched; ``drop``: index rows [U, M] -> bool [U, M], candidates
    removed before the merge (infer: what the user bought; the search goes deeper to refill); each
    interest's first k candidates left are merged, so the depth never changes a list.
    Rows -1 where fewer were found."""
    queries = np.asarray(queries, dtype=np.float32)
    depth = max(k, depth or k)
    if queries.ndim == 2 and depth == k and drop is None:
        return searcher.search(queries, k)
    users, interests = len(queries), (1 if queries.ndim == 2 else queries.shape[1])
    scores, rows = searcher.search(queries.reshape(users * interests, queries.shape[-1]), depth)
    scores, rows = scores.reshape(users, -1), rows.reshape(users, -1)
    if drop is not None:
        rows = np.where(drop(rows), -1, rows)
    if depth > k:  # each interest's first k left: what a k-deep search would find, whatever the depth
        found = (rows >= 0).reshape(users, interests, -1)
        rows = np.where((found & (np.cumsum(found, axis=2) <= k)).reshape(users, -1), rows, -1)
    return merge_interests(scores, rows, k, interests=interests, quota=quota)


def merge_interests(
    scores: np.ndarray, rows: np.ndarray, k: int, *, interests: int = 1, quota: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of [U, M] candidates (rows -1: none): each index row once, at its best score, the best
    ``k`` first; [U, k] scores and rows, -inf / -1 where fewer than k distinct rows were found.

    ``quota`` > 0 with ``interests`` K > 1 (the M columns are the K per-interest lists side by side,
    each best first): each interest's first ``interest_share(quota, k, K)`` candidates are kept
    whatever their score (an item several interests hold is kept once), the other slots go by the
    score. The list stays ordered by the score, so the quota only swaps the tail: the held items that
    the plain max would not have kept replace its last ones. Such an item's score is its best among
    the lists that hold it (a lower bound of its max over all interests; exact for every item the
    plain max keeps). ``quota`` 0 is the plain max."""
    users, width = rows.shape
    share = interest_share(quota, k, interests)
    if share and width % interests:
        raise ValueError(f"{width} candidates per user do not split into {interests} interests' lists")
    held = None
    if share:  # each interest's first `share` found candidates
        found = (rows >= 0).reshape(users, interests, -1)
        held = (found & (np.cumsum(found, axis=2) <= share)).reshape(users, width)
    scores = np.where(rows >= 0, scores, -np.inf).astype(np.float32, copy=False)
    order = np.argsort(-scores, axis=1, kind="stable")
    scores, rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
    keep = _first_copies(rows) & (rows >= 0)
    if held is None:
        keep &= np.cumsum(keep, axis=1) <= k
    else:
        key = np.arange(users, dtype=np.int64)[:, None] * (int(rows.max(initial=0)) + 2) + rows + 1
        held = np.isin(key, key[np.take_along_axis(held, order, 1)])  # every copy of a held item
        kept_held, rest = keep & held, keep & ~held
        slots = k - kept_held.sum(axis=1, keepdims=True)  # held: at most K * share <= k
        keep = kept_held | (rest & (np.cumsum(rest, axis=1) <= slots))
    pick = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(keep, pick, 1)
    out_scores = np.where(kept, np.take_along_axis(scores, pick, 1), -np.inf).astype(np.float32)
    return out_scores, np.where(kept, np.take_along_axis(rows, pick, 1), -1)


def _first_copies(rows: np.ndarray) -> np.ndarray:
    """bool [U, M]: each row's first copy of each value (rows ordered best first). A sort of each row by
    value and position (one int64 key), not a sort of all U * M candidates together."""
    users, width = rows.shape
    key = np.sort((rows.astype(np.int64) + 1) * width + np.arange(width, dtype=np.int64), axis=1)
    value, position = key // width, key % width
    first = np.ones((users, width), dtype=bool)
    first[:, 1:] = value[:, 1:] != value[:, :-1]
    out = np.empty_like(first)
    np.put_along_axis(out, position, first, axis=1)
    return out


@contextlib.contextmanager
def cpu_blas_blocks(items_per_block: int = CPU_BLAS_DATABASE_BLOCK) -> Iterator[None]:
    """Larger sgemm blocks for faiss' exhaustive CPU search while the block runs (a faiss global)."""
    if not hasattr(faiss.cvar, "distance_compute_blas_database_bs"):
        yield
        return
    old = faiss.cvar.distance_compute_blas_database_bs
    faiss.cvar.distance_compute_blas_database_bs = max(old, items_per_block)
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_database_bs = old


def model_digests(model_dir: Path) -> dict[str, str]:
    """sha256 of the model's config.json and of config + both towers' weights (what infer checks)."""
    return model_artifact.digests(model_dir)


def load_model(model_dir: Path, device: torch.device) -> TwoTower:
    model_dir = model_artifact.require(Path(model_dir))
    try:
        return TwoTower.load(model_dir, device)
    except SearchrecError:
        raise
    except Exception as error:  # corrupt config or weights: one line naming the folder
        raise SearchrecError(
            f"cannot load the model from {model_dir}: {type(error).__name__}: {error}"
        ) from None


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / k, for rows of index ids (-1 = nothing found)."""
    m, k = exact.shape
    if m == 0:
        return 1.0
    width = np.int64(max(int(exact.max()), int(found.max()), 0) + 1)
    rows = np.arange(m, dtype=np.int64)[:, None] * width
    hits = np.isin(rows + found.astype(np.int64), rows + exact.astype(np.int64)) & (found >= 0)
    return float(hits.sum()) / (m * k)


# --- stats ----------------------------------------------------------------------------------------
@dataclass
class IndexStats:
    kind: str
    n_items: int
    dim: int
    item_dim: int
    recall: float  # recall@recall_k of the index against exact search (1.0 for flat)
    recall_k: int
    recall_queries: int  # how many queries measured it (0 for flat: exact by construction)
    recall_query_source: str  # "items", "queries", "histories" or "exact"
    params: dict = field(default_factory=dict)  # nlist / nprobe / M / efSearch ...
    device: str = "cpu"
    snapshot_date: str | None = None
    seconds_encode: float = 0.0
    seconds_build: float = 0.0
    seconds_recall: float = 0.0
    speedup: float = 1.0  # exact search time / this index's search time on the recall sample
    choice: str = ""  # why this kind: the request, or what auto measured

    def as_metrics(self) -> dict[str, float]:
        """Flat numbers for a KFP Metrics artifact."""
        out = {
            "n_items": float(self.n_items),
            "dim": float(self.dim),
            f"recall_at_{self.recall_k}": float(self.recall),
            "recall_queries": float(self.recall_queries),
            "seconds_encode": round(self.seconds_encode, 3),
            "seconds_build": round(self.seconds_build, 3),
            "seconds_recall": round(self.seconds_recall, 3),
            "items_per_s_encode": round(self.n_items / max(self.seconds_encode, 1e-9), 1),
            "speedup_vs_exact": round(self.speedup, 3),
            "approximate": float(self.kind != "flat"),
        }
        out.update({k: float(v) for k, v in self.params.items() if isinstance(v, int | float)})
        return out

    def as_metadata(self) -> dict:
        return asdict(self)


# --- the item tower over the snapshot ----------------------------------------------------------------
def _snapshot_info(embeddings_dir: Path, item_dim: int) -> tuple[dict, int]:
    info = snapshot.read_info(embeddings_dir)
    if info.get("dim") is not None and int(info["dim"]) != item_dim:
        raise SearchrecError(
            f"embeddings snapshot has dim {info['dim']} but the model's item tower expects {item_dim}"
        )
    n = snapshot.count_rows(embeddings_dir)
    if n == 0:
        raise SearchrecError(f"embeddings snapshot {embeddings_dir} has no rows")
    if info.get("rows") is not None and int(info["rows"]) != n:
        raise SearchrecError(f"{snapshot.INFO_FILE} says {info['rows']} rows but the parquet files hold {n}")
    return info, n


def encode_items(
    model: TwoTower,
    embeddings_dir: Path,
    *,
    batch_size: int = 65536,
    device: torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Item tower over every item of the snapshot: (nm_ids int64 [n], unit vectors float32 [n, out], info)."""
    embeddings_dir = Path(embeddings_dir)
    device = device or next(model.parameters()).device
    info, n = _snapshot_info(embeddings_dir, model.cfg.item_dim)
    nm_ids = np.empty(n, dtype=np.int64)
    vectors = np.empty((n, model.vector_dim), dtype=np.float32)
    pos = batches = 0
    started = time.perf_counter()
    with torch.inference_mode(), tqdm(total=n, unit="item", desc="item tower", mininterval=2) as bar:
        for ids, matrix in snapshot.iter_batches(embeddings_dir, model.cfg.item_dim, batch_size):
            x = torch.from_numpy(matrix).to(device, non_blocking=True)
            m = len(matrix)
            vectors[pos : pos + m] = model.item_vectors(x, ids).float().cpu().numpy()
            nm_ids[pos : pos + m] = ids
            pos, batches = pos + m, batches + 1
            bar.update(m)
    seconds = time.perf_counter() - started
    snapshot.require_unique(nm_ids, "embeddings snapshot")
    log.info(
        "item tower: %d items in %d batches on %s, %.1f s (%.0f items/s)",
        n,
        batches,
        device,
        seconds,
        n / max(seconds, 1e-9),
    )
    files = len(snapshot.files(embeddings_dir))
    return nm_ids, vectors, {**info, "seconds": seconds, "files": files}


# --- index building ------------------------------------------------------------------------------
def ivf_nlist(n: int) -> int:
    """About 4*sqrt(n) lists, but never fewer than 39 points per list (faiss' training minimum)."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // IVF_MIN_POINTS_PER_CENTROID))


def flat(vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def ivf(
    vectors: np.ndarray,
    nlist: int,
    devices: Devices,
    *,
    train_points_per_centroid: int = IVF_TRAIN_POINTS_PER_CENTROID,
    niter: int = IVF_KMEANS_ITERATIONS,
) -> faiss.IndexIVFFlat:
    """IVF-Flat (inner product) with spherical k-means lists, trained and filled on the GPU when present."""
    n, dim = vectors.shape
    rng = np.random.default_rng(SEED)
    train_n = min(n, nlist * train_points_per_centroid)
    sample = vectors if train_n == n else vectors[np.sort(rng.choice(n, train_n, replace=False))]
    # spherical k-means: centroids stay on the unit sphere, as the vectors are
    kmeans = faiss.Kmeans(
        dim,
        nlist,
        niter=niter,
        seed=SEED,
        spherical=True,
        gpu=devices.faiss_gpu,
        verbose=False,
        max_points_per_centroid=train_points_per_centroid,
    )
    kmeans.train(np.ascontiguousarray(sample))
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(kmeans.centroids)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    if devices.faiss_gpu:
        resources = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
        gpu_index.add(vectors)
        index = faiss.index_gpu_to_cpu(gpu_index)
    else:
        index.add(vectors)
    return index


def hnsw(
    vectors: np.ndarray, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION
) -> faiss.IndexHNSWFlat:
    """HNSW-Flat (inner product), built on the CPU (faiss has no GPU HNSW)."""
    index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    step = 100_000
    with tqdm(total=len(vectors), unit="item", desc="hnsw add", mininterval=2) as bar:
        for start in range(0, len(vectors), step):
            index.add(vectors[start : start + step])
            bar.update(min(step, len(vectors) - start))
    return index


def ladder(start: int, stop: int) -> list[int]:
    values, v = [], max(1, start)
    while v < stop:
        values.append(v)
        v *= 2
    values.append(stop)
    return values


def _query_sample(
    vectors: np.ndarray,
    model: TwoTower,
    devices: Devices,
    recall_sample: int,
    queries: np.ndarray | None,
    encoded_dir: Path | None,
) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(SEED)
    if queries is not None:
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != vectors.shape[1]:
            raise SearchrecError(
                f"recall queries have shape {queries.shape}, expected [m, {vectors.shape[1]}]"
            )
        if len(queries) > recall_sample:
            queries = queries[np.sort(rng.choice(len(queries), recall_sample, replace=False))]
        return np.ascontiguousarray(queries), "queries"
    if encoded_dir is not None:
        return _history_queries(model, Path(encoded_dir), devices, recall_sample, rng), "histories"
    m = min(recall_sample, len(vectors))
    return np.ascontiguousarray(vectors[np.sort(rng.choice(len(vectors), m, replace=False))]), "items"


def _history_queries(
    model: TwoTower, encoded_dir: Path, devices: Devices, recall_sample: int, rng: np.random.Generator
) -> np.ndarray:
    """Query vectors of a sample of encoded histories (the encode stage's output for any split)."""
    table = encoded.read_table(encoded_dir, mmap=True)
    present = encoded.read_info(encoded_dir).get("splits") or list(examples.SPLITS)
    split = next((s for s in (examples.INFER_SPLIT, *examples.TRAIN_SPLITS) if s in present), None)
    if split is None:
        raise SearchrecError(f"{encoded_dir} holds no encoded split")
    _, hist = encoded.read_split(encoded_dir, split, columns=[], table_rows=len(table), mmap=True)
    users = -(-recall_sample // model.cfg.interests)  # each history gives `interests` query vectors
    rows = np.sort(rng.choice(len(hist), min(users, len(hist)), replace=False))
    h = np.asarray(hist[rows])
    if h.size and (h.min() < 0 or h.max() >= len(table)):
        raise SearchrecError(f"{encoded.hist_file(split)} indexes outside {encoded.TABLE_FILE}")
    with torch.inference_mode():
        x = torch.from_numpy(np.asarray(table[h], dtype=np.float32)).to(devices.torch)
        mask = torch.from_numpy(h != 0).to(devices.torch)
        vectors = model.query_vectors(x, mask).float().cpu().numpy()
    return vectors.reshape(-1, vectors.shape[-1])  # every interest vector is a query searched with


@dataclass
class _Tuning:
    """What measuring an approximate index against exact search found."""

    recall: float = 1.0
    n_queries: int = 0
    source: str = "exact"
    seconds: float = 0.0
    speedup: float = 1.0


class _NotWorthIt(Exception):
    """auto: the approximate index cannot beat exact search at the required recall (the reason)."""


def _build(chosen: str, vectors: np.ndarray, devices: Devices, hnsw_m: int) -> tuple[faiss.Index, dict]:
    if chosen == "flat":
        return flat(vectors), {}
    if chosen == "ivf":
        nlist = ivf_nlist(len(vectors))
        return ivf(vectors, nlist, devices), {"nlist": nlist}
    return hnsw(vectors, hnsw_m, HNSW_EF_CONSTRUCTION), {"M": hnsw_m, "efConstruction": HNSW_EF_CONSTRUCTION}


def _timed_search(searcher: Searcher, sample: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    found = searcher.search(sample, k)[1]
    return found, time.perf_counter() - started


def _candidates(chosen: str, params: dict, k: int, fixed: int | None) -> tuple[list[int], str]:
    if chosen == "ivf":
        return ([fixed] if fixed else ladder(1, params["nlist"])), "nprobe"
    return ([fixed] if fixed else [int(k * f) for f in (1, 1.5, 2, 3, 4, 6, 8)]), "efSearch"


def _tune(
    chosen: str,
    index: faiss.Index,
    params: dict,
    sample: np.ndarray,
    exact: tuple[np.ndarray, float],
    fixed: int | None,
    min_recall: float,
    devices: Devices,
    auto_min_speedup: float | None,
) -> tuple[float, float]:
    """Set the cheapest search parameter (IVF nprobe / HNSW efSearch) reaching ``min_recall``; return
    (recall, speedup over exact search). With ``auto_min_speedup`` (auto) it gives up (``_NotWorthIt``) as soon as the
    index is no longer faster than exact search, so tuning never costs more than a few exact searches."""
    exact_rows, exact_s = exact
    k = exact_rows.shape[1]
    candidates, param_name = _candidates(chosen, params, k, fixed)
    tried, recall = [], 0.0
    for value in candidates:
        if chosen == "ivf":
            index.nprobe = min(value, params["nlist"])
            searcher = Searcher(index, devices.faiss_gpu and index.nprobe <= GPU_MAX_K)
        else:
            searcher = Searcher(index, False, ef_search=value)
        found, seconds = _timed_search(searcher, sample, k)
        recall, speedup = recall_at_k(found, exact_rows), exact_s / max(seconds, 1e-9)
        tried.append(f"{param_name}={value}: {recall:.4f} at x{speedup:.2f}")
        log.info(
            "index: %s recall@%d with %s=%d: %.4f, x%.2f exact's speed",
            chosen,
            k,
            param_name,
            value,
            recall,
            speedup,
        )
        if recall >= min_recall:
            params[param_name] = value
            if chosen == "hnsw":
                index.hnsw.efSearch = value
            return recall, speedup
        if auto_min_speedup is not None and speedup < auto_min_speedup:
            raise _NotWorthIt(
                f"{chosen} had recall {recall:.4f} < {min_recall} at {param_name}={value}, already only "
                f"x{speedup:.2f} exact's speed"
            )
    if auto_min_speedup is not None:
        raise _NotWorthIt(f"{chosen} never reached recall {min_recall} ({'; '.join(tried)})")
    raise SearchrecError(
        f"{chosen} index recall@{k} is {recall:.4f} < min_recall {min_recall} "
        f"on {len(sample)} queries ({'; '.join(tried)}); use kind='flat' or lower min_recall"
    )


def _measure(
    chosen: str,
    index: faiss.Index,
    params: dict,
    vectors: np.ndarray,
    k: int,
    sample_of: Callable[[], tuple[np.ndarray, str]],
    fixed: int | None,
    min_recall: float,
    devices: Devices,
    auto_min_speedup: float | None = None,
) -> _Tuning:
    """Recall@k and speed of an approximate index against exact search on a query sample."""
    if chosen == "flat":
        return _Tuning()
    started = time.perf_counter()
    sample, source = sample_of()
    exact_searcher = Searcher(flat(vectors), devices.faiss_gpu)
    exact = _timed_search(exact_searcher, sample, k)
    del exact_searcher
    recall, speedup = _tune(
        chosen, index, params, sample, exact, fixed, min_recall, devices, auto_min_speedup
    )
    return _Tuning(recall, len(sample), source, time.perf_counter() - started, speedup)


def _choose(
    kind: str,
    vectors: np.ndarray,
    devices: Devices,
    hnsw_m: int,
    k: int,
    sample_of: Callable[[], tuple[np.ndarray, str]],
    fixed: int | None,
    min_recall: float,
    auto_threshold: int,
    auto_min_speedup: float,
) -> tuple[str, faiss.Index, dict, float, _Tuning, str]:
    """Build the asked-for index, or for ``auto`` the candidate (IVF from ``auto_threshold`` items up),
    kept only if it beats exact search at ``min_recall`` by ``auto_min_speedup``."""
    chosen = kind if kind != "auto" else ("flat" if len(vectors) < auto_threshold else "ivf")
    started = time.perf_counter()
    index, params = _build(chosen, vectors, devices, hnsw_m)
    seconds_build = time.perf_counter() - started
    log.info("index: %s over %d items x %d built in %.1f s %s", chosen, *vectors.shape, seconds_build, params)
    if kind != "auto":
        tuning = _measure(chosen, index, params, vectors, k, sample_of, fixed, min_recall, devices)
        return chosen, index, params, seconds_build, tuning, f"asked for {kind}"
    if chosen == "flat":
        return (
            chosen,
            index,
            params,
            seconds_build,
            _Tuning(),
            f"auto: {len(vectors)} items < {auto_threshold}",
        )
    try:
        tuning = _measure(
            chosen, index, params, vectors, k, sample_of, fixed, min_recall, devices, auto_min_speedup
        )
        if tuning.speedup >= auto_min_speedup:
            return (
                chosen,
                index,
                params,
                seconds_build,
                tuning,
                f"auto: {chosen} x{tuning.speedup:.2f} exact's speed",
            )
        reason = f"{chosen} at recall {tuning.recall:.4f} only x{tuning.speedup:.2f} exact's speed"
    except _NotWorthIt as why:
        reason = str(why)
    log.warning("index: auto falls back to exact search: %s", reason)
    return (
        "flat",
        flat(vectors),
        {},
        time.perf_counter() - started,
        _Tuning(),
        f"auto fell back to flat: {reason}",
    )


def _check_build_params(kind: str, min_recall: float, *positive: int) -> None:
    if kind not in KINDS:
        raise SearchrecError(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not 0.0 <= min_recall <= 1.0:
        raise SearchrecError(f"min_recall must be within [0, 1], got {min_recall}")
    if min(positive) < 1:
        raise SearchrecError("batch_size, recall_sample and recall_k must be positive")


def _index_info(stats: IndexStats, info: dict, kind: str, min_recall: float, digests: dict) -> dict:
    return {
        **stats.as_metadata(),
        "n": stats.n_items,
        "metric": "inner_product",
        "faiss_version": faiss.__version__,
        "snapshot_uri": info.get("uri"),
        "requested_kind": kind,
        "min_recall": min_recall,
        **digests,
    }


def build_index(
    model_dir: Path,
    embeddings_dir: Path,
    index_dir: Path,
    *,
    kind: str = config.INDEX_KIND,
    auto_threshold: int = config.INDEX_AUTO_THRESHOLD,
    auto_min_speedup: float = config.INDEX_AUTO_MIN_SPEEDUP,
    min_recall: float = config.MIN_INDEX_RECALL,
    recall_sample: int = 2000,
    recall_k: int = config.TOP_K,
    batch_size: int = 65536,
    nprobe: int | None = None,
    ef_search: int | None = None,
    hnsw_m: int = HNSW_M,
    queries: np.ndarray | None = None,
    encoded_dir: Path | None = None,
    device: str = "auto",
) -> IndexStats:
    """Encode every snapshot item with the item tower and write a faiss index folder.

    kind: ``flat`` (exact IndexFlatIP), ``ivf`` (IVF-Flat, nlist ~ 4*sqrt(n)), ``hnsw`` (HNSW-Flat), or
    ``auto``: flat below ``auto_threshold`` items; above, an IVF candidate kept only if, tuned to
    ``min_recall``, it searches the sample ``auto_min_speedup`` times faster than exact
    search (else exact, and ``IndexStats.choice`` says why). Approximate indexes get their recall@k
    measured against exact search on ``recall_sample`` queries: ``queries`` (query-tower vectors) if
    given, else histories sampled from ``encoded_dir`` if given, else item vectors. Their search
    parameter (``nprobe`` / ``ef_search``) is the cheapest reaching ``min_recall`` unless fixed by the
    caller; below ``min_recall`` the build fails and nothing is written.
    """
    _check_build_params(kind, min_recall, batch_size, recall_sample, recall_k)
    devices = resolve_devices(device)
    model = load_model(Path(model_dir), devices.torch)
    digests = model_digests(Path(model_dir))
    log.info("index: model %s (%d -> %d) on %s", model_dir, model.cfg.item_dim, model.cfg.output_dim, devices)
    nm_ids, vectors, info = encode_items(
        model, Path(embeddings_dir), batch_size=batch_size, device=devices.torch
    )
    n, dim = vectors.shape
    chosen, index, params, seconds_build, tuning, choice = _choose(
        kind,
        vectors,
        devices,
        hnsw_m,
        min(recall_k, n),
        lambda: _query_sample(vectors, model, devices, recall_sample, queries, encoded_dir),
        nprobe if kind in ("ivf", "auto") else ef_search,
        min_recall,
        auto_threshold,
        auto_min_speedup,
    )
    stats = IndexStats(
        kind=chosen,
        n_items=n,
        dim=dim,
        item_dim=model.cfg.item_dim,
        recall=float(tuning.recall),
        recall_k=min(recall_k, n),
        recall_queries=tuning.n_queries,
        recall_query_source=tuning.source,
        params=params,
        device=devices.name,
        snapshot_date=info.get("snapshot_date"),
        seconds_encode=float(info["seconds"]),
        seconds_build=seconds_build,
        seconds_recall=tuning.seconds,
        speedup=tuning.speedup,
        choice=choice,
    )
    index_artifact.write(Path(index_dir), index, nm_ids, _index_info(stats, info, kind, min_recall, digests))
    log.info("index: wrote %s (%s, n=%d, recall@%d=%.4f)", index_dir, chosen, n, stats.recall_k, stats.recall)
    return stats


def load_index(index_dir: Path) -> tuple[faiss.Index, np.ndarray, dict]:
    """(CPU faiss index with its search parameters set, nm_ids int64 [n], index.json) of an index folder."""
    return index_artifact.read(Path(index_dir))
