"""Index stage: item tower over the whole snapshot, exact and approximate faiss indexes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from searchrec.artifacts import encoded, examples, snapshot
from searchrec.artifacts import folder as artifact_folder
from searchrec.artifacts import index as index_artifact
from searchrec.artifacts import model as model_artifact
from searchrec.errors import SearchrecError
from searchrec.model import TwoTower, TwoTowerConfig
from searchrec.stages.index import (
    Searcher,
    _history_queries,
    build_index,
    interest_share,
    load_index,
    merge_interests,
    recall_at_k,
    resolve_devices,
)
from tests.brute_force import quota_top_k

QUERY_DIM, ITEM_DIM, N_ITEMS = 8, 16, 1500


def write_snapshot(
    folder: Path,
    nm_ids: np.ndarray,
    vectors: np.ndarray | list,
    *,
    files: int = 2,
    date: str = "2026-10-01",
    info: dict | None = None,
) -> Path:
    """A snapshot artifact as extract publishes it; ``info`` replaces snapshot.json's content."""
    dim = len(vectors[0])
    with artifact_folder.publishing(folder, snapshot.KIND):
        for i, part in enumerate(np.array_split(np.arange(len(nm_ids)), files)):
            table = pa.table(
                {
                    "nm_id": nm_ids[part],
                    "embedding": pa.array([vectors[j] for j in part], pa.list_(pa.float32())),
                },
                schema=snapshot.EMBEDDINGS,
            )
            pq.write_table(table, folder / f"part-{i:05d}.parquet")
        default = {"uri": str(folder), "snapshot_date": date, "dim": dim, "rows": len(nm_ids)}
        (folder / snapshot.INFO_FILE).write_text(json.dumps(default if info is None else info))
    return folder


def item_vectors(model_dir: Path, embeddings: np.ndarray) -> np.ndarray:
    model = TwoTower.load(model_dir)
    with torch.inference_mode():
        return model.item_tower(torch.from_numpy(embeddings)).numpy()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("index")
    torch.manual_seed(0)
    model_artifact.write(
        root / "model", TwoTower(TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM)).save
    )
    rng = np.random.default_rng(0)
    nm_ids = rng.choice(10**9, N_ITEMS, replace=False).astype(np.int64)
    embeddings = rng.normal(size=(N_ITEMS, ITEM_DIM)).astype(np.float32)
    write_snapshot(root / "emb", nm_ids, embeddings)
    return {
        "root": root,
        "model": root / "model",
        "emb": root / "emb",
        "nm_ids": nm_ids,
        "embeddings": embeddings,
    }


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_flat_index_holds_every_item_and_equals_numpy_brute_force(world: dict, tmp_path: Path) -> None:
    stats = build_index(world["model"], world["emb"], tmp_path / "idx", batch_size=400)

    index, nm_ids, info = load_index(tmp_path / "idx")
    assert stats.kind == info["kind"] == "flat" and isinstance(index, faiss.IndexFlatIP)
    np.testing.assert_array_equal(nm_ids, world["nm_ids"])  # row i -> nm_id, snapshot order over 2 files
    vectors = item_vectors(world["model"], world["embeddings"])
    np.testing.assert_allclose(index.reconstruct_n(0, index.ntotal), vectors, atol=1e-6)
    assert info["n"] == N_ITEMS and info["dim"] == 128 and info["recall"] == 1.0
    assert info["snapshot_date"] == "2026-10-01" and len(info["model_config_digest"]) == 64

    queries = np.random.default_rng(1).normal(size=(50, 128)).astype(np.float32)
    scores, rows = Searcher(index, use_gpu=False).search(queries, 200)
    brute = queries @ vectors.T
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :200]
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, axis=1), atol=1e-5)
    assert (rows == expected).mean() > 0.999  # only float near-ties may swap places
    assert (np.diff(scores, axis=1) <= 0).all()


def test_auto_keeps_the_approximate_index_when_it_pays_with_measured_recall(
    world: dict, tmp_path: Path
) -> None:
    stats = build_index(
        world["model"],
        world["emb"],
        tmp_path / "idx",
        auto_threshold=1000,
        min_recall=0.9,
        auto_min_speedup=0.0,
    )

    assert stats.kind == "ivf" and stats.recall_query_source == "items" and stats.recall_queries == N_ITEMS
    assert stats.recall >= 0.9 and stats.params["nlist"] == N_ITEMS // 39
    assert stats.speedup > 0 and stats.choice.startswith("auto: ivf x")
    index, _, info = load_index(tmp_path / "idx")
    assert isinstance(index, faiss.IndexIVFFlat) and index.nprobe == stats.params["nprobe"]
    assert info["recall"] == stats.recall and stats.as_metrics()["recall_at_200"] == stats.recall
    # the recall in index.json is what the saved index achieves: recompute it independently
    vectors = item_vectors(world["model"], world["embeddings"])
    queries = vectors[::7]
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :200]
    _, found = index.search(queries, 200)
    assert abs(recall_at_k(found, exact) - stats.recall) < 0.02


def test_auto_falls_back_to_exact_when_the_approximate_index_does_not_pay(
    world: dict, tmp_path: Path
) -> None:
    stats = build_index(
        world["model"], world["emb"], tmp_path / "idx", auto_threshold=1000, auto_min_speedup=1000.0
    )
    assert stats.kind == "flat" and stats.recall == 1.0 and stats.as_metrics()["approximate"] == 0.0
    assert stats.choice.startswith("auto fell back to flat: ivf")
    index, _, info = load_index(tmp_path / "idx")
    assert isinstance(index, faiss.IndexFlatIP) and info["choice"] == stats.choice
    below = build_index(world["model"], world["emb"], tmp_path / "idx2")  # 1500 items < the default threshold
    assert below.kind == "flat" and below.choice == f"auto: {N_ITEMS} items < 200000"


def test_hnsw_recall_with_given_queries(world: dict, tmp_path: Path) -> None:
    queries = np.random.default_rng(2).normal(size=(300, 128)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    stats = build_index(
        world["model"], world["emb"], tmp_path / "idx", kind="hnsw", queries=queries, recall_sample=200
    )

    assert stats.kind == "hnsw" and stats.recall_query_source == "queries" and stats.recall_queries == 200
    assert stats.recall >= 0.95 and stats.params["efSearch"] >= 200
    index, _, _ = load_index(tmp_path / "idx")
    assert isinstance(index, faiss.IndexHNSWFlat) and index.hnsw.efSearch == stats.params["efSearch"]


def test_recall_below_min_recall_fails_and_writes_nothing(world: dict, tmp_path: Path) -> None:
    with pytest.raises(SearchrecError, match=r"recall@200 is 0\.\d+ < min_recall 0\.99"):
        build_index(world["model"], world["emb"], tmp_path / "idx", kind="ivf", nprobe=1, min_recall=0.99)
    assert not (tmp_path / "idx").exists() and leftovers(tmp_path) == []


def test_cpu_and_auto_device_give_the_same_index(world: dict, tmp_path: Path) -> None:
    """One code path: 'auto' takes the GPU where there is one (else the CPU), 'cpu' never does."""
    build_index(world["model"], world["emb"], tmp_path / "cpu", device="cpu")
    build_index(world["model"], world["emb"], tmp_path / "auto", device="auto")
    a, ids_a, _ = load_index(tmp_path / "cpu")
    b, ids_b, _ = load_index(tmp_path / "auto")
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_allclose(a.reconstruct_n(0, a.ntotal), b.reconstruct_n(0, b.ntotal), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="faiss sees no GPU")
def test_gpu_search_equals_cpu_search(world: dict, tmp_path: Path) -> None:
    build_index(world["model"], world["emb"], tmp_path / "idx")
    index, _, _ = load_index(tmp_path / "idx")
    queries = np.random.default_rng(3).normal(size=(100, 128)).astype(np.float32)
    gpu_scores, gpu_rows = Searcher(index, use_gpu=True).search(queries, 200)
    cpu_scores, cpu_rows = Searcher(index, use_gpu=False).search(queries, 200)
    np.testing.assert_allclose(gpu_scores, cpu_scores, atol=1e-5)
    assert (gpu_rows == cpu_rows).mean() > 0.999


def test_rebuild_replaces_the_previous_index(world: dict, tmp_path: Path) -> None:
    build_index(world["model"], world["emb"], tmp_path / "idx", kind="hnsw")
    build_index(world["model"], world["emb"], tmp_path / "idx", kind="flat")
    assert json.loads((tmp_path / "idx" / index_artifact.INFO_FILE).read_text())["kind"] == "flat"
    assert leftovers(tmp_path) == []


def test_item_dim_mismatch_is_one_clear_error(world: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    emb = write_snapshot(tmp_path / "emb12", np.arange(100), rng.normal(size=(100, 12)).astype(np.float32))
    with pytest.raises(SearchrecError, match="snapshot has dim 12 but the model's item tower expects 16"):
        build_index(world["model"], emb, tmp_path / "idx")
    vectors12 = rng.normal(size=(100, 12)).astype(np.float32)
    emb = write_snapshot(
        tmp_path / "emb-nodim", np.arange(100), vectors12, info={"snapshot_date": "2026-10-01"}
    )
    with pytest.raises(
        SearchrecError, match="part-00000.parquet: 50 embeddings have length 12 .*expected 16"
    ):
        build_index(world["model"], emb, tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no_folder", "does not exist"),
        ("no_parquet", r"emb lacks snapshot.json"),
        ("duplicate", "repeats 1 nm_id"),
        ("null_embedding", "1 rows have a null embedding"),
        ("nan", "NaN or infinite"),
        ("rows", "says 99 rows but the parquet files hold 20"),
        ("no_model", "model artifact .*empty_model is not a searchrec artifact"),
        ("half_model", "model artifact .*half_model is incomplete: item_tower.safetensors is missing"),
        ("kind", "unknown index kind 'annoy'"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    world: dict, tmp_path: Path, breakage: str, message: str
) -> None:
    rng = np.random.default_rng(5)
    nm_ids, vectors = np.arange(20, dtype=np.int64), rng.normal(size=(20, ITEM_DIM)).astype(np.float32)
    emb, model, kind = tmp_path / "emb", world["model"], "auto"
    if breakage == "no_folder":
        emb = tmp_path / "missing"
    elif breakage == "no_parquet":
        with artifact_folder.publishing(emb, snapshot.KIND):
            pass
    elif breakage == "duplicate":
        nm_ids[3] = nm_ids[4]
    elif breakage == "nan":
        vectors[7, 2] = np.nan
    elif breakage == "no_model":
        model = tmp_path / "empty_model"
        model.mkdir()
    elif breakage == "half_model":  # a copy that lost a file (a failed download, a partial sync)
        model = tmp_path / "half_model"
        model_artifact.write(model, TwoTower(TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM)).save)
        (model / "item_tower.safetensors").unlink()
    elif breakage == "kind":
        kind = "annoy"
    info = {"snapshot_date": "2026-10-01", "dim": ITEM_DIM, "rows": 99} if breakage == "rows" else None
    embeddings = [list(v) for v in vectors]
    if breakage == "null_embedding":
        embeddings[5] = None
    if breakage not in ("no_folder", "no_parquet"):
        write_snapshot(emb, nm_ids, embeddings, files=1, info=info)

    with pytest.raises(SearchrecError, match=message):
        build_index(model, emb, tmp_path / "idx", kind=kind)
    assert not (tmp_path / "idx").exists() and leftovers(tmp_path) == []


def test_merge_interests_keeps_each_item_once_at_its_best_score() -> None:
    # user 0: two interests' lists [7, 3, 5] and [3, 9, -1]; user 1: fewer than k distinct items
    scores = np.array([[0.9, 0.5, 0.2, 0.8, 0.6, -np.inf], [0.4, 0.3, 0.1, 0.4, 0.3, 0.1]], np.float32)
    rows = np.array([[7, 3, 5, 3, 9, -1], [1, 2, -1, 1, 2, -1]])
    merged_scores, merged_rows = merge_interests(scores, rows, 4)
    assert merged_rows.tolist() == [[7, 3, 9, 5], [1, 2, -1, -1]]
    assert np.allclose(merged_scores[0], [0.9, 0.8, 0.6, 0.2]) and np.isneginf(merged_scores[1, 2:]).all()


def test_merge_interests_breaks_score_ties_by_list_order() -> None:
    # two interests' lists [4, 8, 6] and [8, 2, 4]: 8 and 2 tie at 0.5, 4 at 0.7 in both lists
    scores = np.array([[0.7, 0.5, 0.1, 0.5, 0.5, 0.7]], np.float32)
    rows = np.array([[4, 8, 6, 8, 2, 4]])
    merged_scores, merged_rows = merge_interests(scores, rows, 4, interests=2)
    assert merged_rows.tolist() == [[4, 8, 2, 6]] and np.allclose(merged_scores, [[0.7, 0.5, 0.5, 0.1]])
    assert merge_interests(scores, rows, 9, interests=2)[1].tolist() == [[4, 8, 2, 6, -1, -1]]


@pytest.mark.parametrize("quota", [0.0, 0.2, 0.5, 1.0])
def test_merge_with_a_quota_keeps_each_interests_share_as_brute_force(quota: float) -> None:
    """K = 3 interests, each searched 20 deep over 60 items (some users' lists cut short, as a search
    that finds fewer gives -1): the merge equals the brute-force quota over every item: each interest's
    own best floor(quota * k / K) items kept, the rest by the max score, ordered by the max, each once."""
    rng = np.random.default_rng(7)
    users, interests, n, k = 40, 3, 60, 20
    full = rng.normal(size=(users, interests, n)).astype(np.float32)
    full[:, 1] += 3.0 * (rng.random((users, 1)) < 0.5)  # for half the users one interest dominates the max
    rows = np.argsort(-full, axis=2, kind="stable")[:, :, :k]
    scores = np.take_along_axis(full, rows, 2)
    short = np.zeros((users, interests, k), dtype=bool)  # a quarter of the users: one list cut short
    for u in np.flatnonzero(rng.random(users) < 0.25):
        short[u, rng.integers(interests), rng.integers(0, k) :] = True
    rows, scores = np.where(short, -1, rows), np.where(short, -np.inf, scores)
    merged_scores, merged = merge_interests(
        scores.reshape(users, -1), rows.reshape(users, -1), k, interests=interests, quota=quota
    )
    share = int(quota * k / interests + 1e-9)
    assert share == interest_share(quota, k, interests)
    changed = 0
    for u in range(users):
        got = merged[u][merged[u] >= 0].tolist()
        assert len(got) == len(set(got)) and (merged[u][len(got) :] == -1).all()
        assert np.isneginf(merged_scores[u][len(got) :]).all()
        assert (np.diff(merged_scores[u][: len(got)]) <= 0).all()  # ordered by the max score
        for i in range(interests):  # each interest's own best found items are all there
            own = rows[u, i][rows[u, i] >= 0][:share]
            assert set(own.tolist()) <= set(got), (u, i)
        if not short[u].any():  # every list k deep: exact against the brute force over all items
            expected, best = quota_top_k(full[u], k, quota)
            assert got == expected and np.allclose(merged_scores[u], best)
            changed += expected != quota_top_k(full[u], k, 0.0)[0]
    plain = merge_interests(scores.reshape(users, -1), rows.reshape(users, -1), k)
    if quota == 0.0:  # the plain max, bit for bit
        assert np.array_equal(merged, plain[1]) and np.array_equal(merged_scores, plain[0])
    else:
        assert changed > 0  # the quota changed some users' lists (else this test checks nothing)


def test_history_sample_for_tuning_holds_every_interest_vector(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoTower(TwoTowerConfig(query_dim=8, item_dim=16, interests=3)).eval()
    rng = np.random.default_rng(0)
    table = rng.normal(size=(11, 8)).astype(np.float32)
    hist = rng.integers(0, 11, size=(40, 5)).astype(np.int32)
    rows = pa.table({"user_id": pa.array(np.arange(40), pa.int64())})
    texts = [f"q{i}" for i in range(10)]
    encoded.write(
        tmp_path / "enc", table, texts, [encoded.EncodedSplit(examples.INFER_SPLIT, rows, hist)], {}
    )
    sample = _history_queries(model, tmp_path / "enc", resolve_devices("cpu"), 12, np.random.default_rng(0))
    assert sample.shape == (12, model.vector_dim)  # 4 histories x 3 interests
    assert np.allclose(np.linalg.norm(sample, axis=1), 1.0, atol=1e-5)
