"""Infer stage: recommendations content against brute force, shards, exclusions, skipping, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from searchrec.artifacts import encoded, examples, recommendations, snapshot
from searchrec.artifacts import events as event_parts
from searchrec.artifacts import folder as artifact_folder
from searchrec.artifacts import model as model_artifact
from searchrec.artifacts.recommendations import STATS_FILE
from searchrec.errors import SearchrecError
from searchrec.model import TwoTower, TwoTowerConfig
from searchrec.stages.index import build_index
from searchrec.stages.infer import recommend
from searchrec.stages.merge import copy_to, merge_shards
from tests.brute_force import quota_top_k

QUERY_DIM, ITEM_DIM, N_ITEMS, N_USERS, N_QUERIES, TOP_K = 8, 16, 500, 240, 40, 200


def write_encoded(
    folder: Path, user_ids: np.ndarray, hist: np.ndarray, table: np.ndarray, info: dict | None = None
) -> Path:
    rows = pa.table({"user_id": pa.array(user_ids, pa.int64())})
    texts = [f"q{i}" for i in range(len(table) - 1)]
    encoded.write(folder, table, texts, [encoded.EncodedSplit(examples.INFER_SPLIT, rows, hist)], info or {})
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("infer")
    torch.manual_seed(0)
    model_artifact.write(
        root / "model", TwoTower(TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM)).save
    )
    rng = np.random.default_rng(0)
    nm_ids = rng.choice(10**9, N_ITEMS, replace=False).astype(np.int64)
    embeddings = rng.normal(size=(N_ITEMS, ITEM_DIM)).astype(np.float32)
    emb = root / "emb"
    snapshot.write(
        emb,
        pa.table({"nm_id": nm_ids, "embedding": pa.array(list(embeddings), pa.list_(pa.float32()))}),
        snapshot.SnapshotInfo(str(emb), "2026-10-01", "2026-10-01", ITEM_DIM, N_ITEMS, ["part-0.parquet"]),
    )
    build_index(root / "model", emb, root / "index")

    # users: unique ids (a few negative), histories of 0..5 real queries, right-aligned, 0 = pad
    user_ids = rng.choice(np.arange(-50, 10**6), N_USERS, replace=False).astype(np.int64)
    lengths = rng.integers(0, 6, N_USERS)
    hist = np.zeros((N_USERS, 5), dtype=np.int32)
    for i, n in enumerate(lengths):
        if n:
            hist[i, 5 - n :] = rng.integers(1, N_QUERIES + 1, n)
    table = rng.normal(size=(N_QUERIES + 1, QUERY_DIM)).astype(np.float32)
    write_encoded(root / "encoded", user_ids, hist, table)

    # brute force over the item tower, as the stage should compute it
    model = TwoTower.load(root / "model")
    with torch.inference_mode():
        items = model.item_tower(torch.from_numpy(embeddings)).numpy()
        queries = model.query_tower(torch.from_numpy(table[hist]), torch.from_numpy(hist != 0)).numpy()
    return {
        "root": root,
        "model": root / "model",
        "index": root / "index",
        "encoded": root / "encoded",
        "emb": emb,
        "nm_ids": nm_ids,
        "user_ids": user_ids,
        "lengths": lengths,
        "scores": queries @ items.T,  # [users, items]
    }


def read(out_dir: Path) -> pa.Table:
    return recommendations.read(out_dir)


def assert_same_ranking(ids_a: list, scores_a: list, ids_b: list, scores_b: list, atol: float = 1e-5) -> None:
    """Equal lists of items and scores; two items may only swap places where their scores tie within atol."""
    assert len(ids_a) == len(ids_b)
    b = np.asarray(scores_b, np.float64)
    np.testing.assert_allclose(np.asarray(scores_a, np.float64), b, atol=atol)
    for i in np.flatnonzero(np.asarray(ids_a) != np.asarray(ids_b)):
        near = np.abs(b - b[i]) <= atol
        near[i] = False
        assert near.any(), f"rank {i}: {ids_a[i]} instead of {ids_b[i]} without a tie in scores"


def expected_for(world: dict, user_id: int, k: int, exclude: set[int] = frozenset()) -> tuple[list, list]:
    row = int(np.flatnonzero(world["user_ids"] == user_id)[0])
    s = world["scores"][row]
    order = [j for j in np.argsort(-s, kind="stable") if int(world["nm_ids"][j]) not in exclude][:k]
    return [int(world["nm_ids"][j]) for j in order], [float(s[j]) for j in order]


def test_every_user_gets_the_brute_force_top_200(world: dict, tmp_path: Path) -> None:
    stats = recommend(world["model"], world["index"], world["encoded"], tmp_path / "out", batch_size=64)

    table = read(tmp_path / "out")
    assert table.schema.equals(recommendations.RECOMMENDATIONS)
    served = world["user_ids"][world["lengths"] >= 1]
    users = table.column("user_id").to_numpy()
    assert sorted(users.tolist()) == sorted(served.tolist()) and (np.diff(users) > 0).all()
    known = set(world["nm_ids"].tolist())
    for rec in table.to_pylist():
        ids, scores = rec["nm_ids"], rec["scores"]
        assert len(ids) == len(set(ids)) == TOP_K and set(ids) <= known
        assert all(x >= y for x, y in zip(scores, scores[1:], strict=False))
        assert_same_ranking(ids, scores, *expected_for(world, rec["user_id"], TOP_K))

    assert stats.users_served == len(served) and stats.users_in_shard == N_USERS
    assert stats.users_skipped == {"short_history": int((world["lengths"] < 1).sum())}
    all_ids = {i for ids in table.column("nm_ids").to_pylist() for i in ids}
    assert stats.distinct_items == len(all_ids) and stats.coverage == pytest.approx(len(all_ids) / N_ITEMS)
    top1 = [s[0] for s in table.column("scores").to_pylist()]
    assert stats.mean_top1_score == pytest.approx(np.mean(top1), abs=1e-6)
    metrics = stats.as_metrics()
    assert metrics["users_skipped_short_history"] == stats.users_skipped["short_history"]
    assert metrics["coverage"] == pytest.approx(stats.coverage, abs=1e-6)
    assert recommendations.read_stats(tmp_path / "out") == stats


def test_top_k_above_the_catalogue_gives_the_whole_catalogue(world: dict, tmp_path: Path) -> None:
    stats = recommend(world["model"], world["index"], world["encoded"], tmp_path / "out", top_k=10_000)
    lists = read(tmp_path / "out").column("nm_ids").to_pylist()
    assert stats.top_k == N_ITEMS and all(sorted(ids) == sorted(world["nm_ids"].tolist()) for ids in lists)
    assert stats.coverage == 1.0 and stats.users_short_list == 0


def test_three_shards_merged_equal_one_run(world: dict, tmp_path: Path) -> None:
    single = recommend(world["model"], world["index"], world["encoded"], tmp_path / "single", batch_size=50)
    shard_dirs = []
    for s in range(3):
        st = recommend(
            world["model"],
            world["index"],
            world["encoded"],
            tmp_path / f"s{s}",
            shard_index=s,
            num_shards=3,
            batch_size=50,
        )
        users = read(tmp_path / f"s{s}").column("user_id").to_numpy()
        assert (users % 3 == s).all() and st.users_in_shard == int((world["user_ids"] % 3 == s).sum())
        shard_dirs.append(tmp_path / f"s{s}")
    merged = merge_shards(shard_dirs[::-1], tmp_path / "merged", rows_per_group=17)

    a, b = read(tmp_path / "single").to_pylist(), read(tmp_path / "merged").to_pylist()
    assert [r["user_id"] for r in a] == [r["user_id"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert_same_ranking(ra["nm_ids"], ra["scores"], rb["nm_ids"], rb["scores"])
    for field in (
        "users_in_shard",
        "users_served",
        "users_skipped",
        "recommendations",
        "distinct_items",
        "catalogue_size",
    ):
        assert getattr(merged, field) == getattr(single, field), field
    assert merged.shards_merged == 3 and merged.mean_score == pytest.approx(single.mean_score, abs=1e-6)

    with pytest.raises(SearchrecError, match=r"shards \[0, 2\] of \[3\]"):
        merge_shards([shard_dirs[0], shard_dirs[2]], tmp_path / "partial")
    assert not (tmp_path / "partial").exists()


def test_bought_items_are_excluded_and_the_list_refilled(world: dict, tmp_path: Path) -> None:
    served = world["user_ids"][world["lengths"] >= 1]
    u1, u2 = int(served[0]), int(served[1])
    top1, _ = expected_for(world, u1, 5)
    top2, _ = expected_for(world, u2, 50)
    bought = {u1: {top1[0], top1[3]}, u2: set(top2[:40])}
    bought_dir = tmp_path / "bought"
    rows = [(u, nm) for u, items in bought.items() for nm in items]
    rows += [(u1, top1[0]), (u1, 123), (10**9 + 7, top1[1])]  # a repeat, an unknown item, an unknown user
    orders = pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "order_ts": pa.array([0] * len(rows), pa.timestamp("us")),
            "nm_id": pa.array([r[1] for r in rows], pa.int64()),
        }
    )
    event_parts.write(bought_dir, [orders])

    stats = recommend(
        world["model"],
        world["index"],
        world["encoded"],
        tmp_path / "out",
        exclude_bought_dir=bought_dir,
        batch_size=32,
    )

    recs = {r["user_id"]: r for r in read(tmp_path / "out").to_pylist()}
    for user, items in bought.items():
        assert not set(recs[user]["nm_ids"]) & items and len(recs[user]["nm_ids"]) == TOP_K
        assert_same_ranking(
            recs[user]["nm_ids"], recs[user]["scores"], *expected_for(world, user, TOP_K, items)
        )
    untouched = int(served[2])
    assert_same_ranking(
        recs[untouched]["nm_ids"], recs[untouched]["scores"], *expected_for(world, untouched, TOP_K)
    )
    assert stats.items_excluded == 42 and stats.users_served == len(served)


def test_short_histories_are_skipped_and_counted(world: dict, tmp_path: Path) -> None:
    stats = recommend(world["model"], world["index"], world["encoded"], tmp_path / "out", min_history=3)
    users = set(read(tmp_path / "out").column("user_id").to_pylist())
    assert users == set(world["user_ids"][world["lengths"] >= 3].tolist())
    assert stats.users_skipped == {"short_history": int((world["lengths"] < 3).sum())}
    assert stats.users_served + stats.users_skipped["short_history"] == N_USERS

    everyone = recommend(world["model"], world["index"], world["encoded"], tmp_path / "all", min_history=0)
    assert everyone.users_served == N_USERS and everyone.users_skipped == {}


def test_copy_to_a_local_root(world: dict, tmp_path: Path) -> None:
    """The copy goes to <root>/<end date>-<task id>/ and LATEST.json names it; the copy reads as the
    artifact does."""
    from searchrec.outputs import LATEST, MARKER, latest_output

    recommend(world["model"], world["index"], world["encoded"], tmp_path / "out", top_k=5)
    pointer = copy_to(tmp_path / "out", f"file://{tmp_path / 'copies'}", end_date="2026-10-14")
    assert pointer["name"].startswith("2026-10-14-") and pointer["users"] == read(tmp_path / "out").num_rows
    assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == sorted(
        [pointer["name"], LATEST, MARKER]
    )
    assert read(Path(latest_output(str(tmp_path / "copies")))).equals(read(tmp_path / "out"))
    with pytest.raises(SearchrecError, match="unsupported output root 'ftp://x/y'"):
        copy_to(tmp_path / "out", "ftp://x/y")
    with pytest.raises(SearchrecError, match="contains this task's own artifact"):
        copy_to(tmp_path / "out", str(tmp_path))


def test_copy_to_s3_and_gcs(world: dict, tmp_path: Path, s3_endpoint: str, gcs_endpoint: str) -> None:
    import boto3
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    from searchrec.outputs import latest_output
    from searchrec.storage import download_tree, list_dir

    recommend(world["model"], world["index"], world["encoded"], tmp_path / "out", top_k=5)
    boto3.client("s3").create_bucket(Bucket="recs")
    gcs.Client(credentials=AnonymousCredentials(), project="test").create_bucket("recs")
    for root in ("s3://recs/recommendations", "gs://recs/recommendations"):
        pointer = copy_to(tmp_path / "out", root, end_date="2026-10-14", task_uri="gs://p/run-1/infer/r")
        assert pointer["uri"] == f"{root}/{pointer['name']}" == latest_output(root)
        names = list_dir(pointer["uri"])
        assert names == sorted([artifact_folder.COMPLETE_MARKER, recommendations.FILE, STATS_FILE])
        back = tmp_path / root.split(":")[0]
        download_tree(pointer["uri"], back)
        assert read(back).equals(read(tmp_path / "out"))


def test_bad_input_is_refused_and_nothing_written(world: dict, tmp_path: Path) -> None:
    def refused(match: str, **overrides: object) -> None:
        args = {"model_dir": world["model"], "index_dir": world["index"], "encoded_dir": world["encoded"]}
        args.update(overrides)
        with pytest.raises(SearchrecError, match=match):
            recommend(out_dir=tmp_path / "out", **args)
        assert not (tmp_path / "out").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    rng = np.random.default_rng(9)
    hist = np.ones((3, 5), np.int32)
    no_hist = write_encoded(tmp_path / "e1", np.arange(3), hist, np.zeros((2, 8), np.float32))
    (no_hist / encoded.hist_file(examples.INFER_SPLIT)).unlink()
    refused("encoded queries artifact .* is incomplete: histories_hist.npy is missing", encoded_dir=no_hist)
    wide = write_encoded(tmp_path / "e2", np.arange(3), hist, rng.normal(size=(2, 12)).astype(np.float32))
    refused(r"table.npy has shape \(2, 12\); the model's query tower expects \[\*, 8\]", encoded_dir=wide)
    outside = write_encoded(tmp_path / "e3", np.arange(3), hist * 7, np.zeros((2, 8), np.float32))
    refused(r"indices outside \[0, 2\)", encoded_dir=outside)
    twice = write_encoded(tmp_path / "e4", np.array([5, 5, 6]), hist, np.zeros((2, 8), np.float32))
    refused("some user_id more than once", encoded_dir=twice)
    refused("the index artifact .*nowhere does not exist", index_dir=tmp_path / "nowhere")
    torch.manual_seed(1)
    model_artifact.write(
        tmp_path / "other_model", TwoTower(TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM)).save
    )
    refused("built with a different model", model_dir=tmp_path / "other_model")
    model_artifact.write(
        tmp_path / "narrow",
        TwoTower(TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM, output_dim=64)).save,
    )
    refused("index vectors have dim 128 but the model's towers output 64", model_dir=tmp_path / "narrow")
    refused(r"shard_index must be within \[0, num_shards\), got 3 of 3", shard_index=3, num_shards=3)
    refused(
        "exclude_bought orders artifact .*no_orders does not exist", exclude_bought_dir=tmp_path / "no_orders"
    )


def test_queries_encoded_differently_from_training_are_refused(world: dict, tmp_path: Path) -> None:
    model = tmp_path / "model"
    torch.manual_seed(0)
    model_artifact.write(
        model,
        TwoTower(
            TwoTowerConfig(
                query_dim=QUERY_DIM,
                item_dim=ITEM_DIM,
                extra={"encoder": "gs://models/rubert-tiny2", "pooling": "cls", "encoder_dim": QUERY_DIM},
            )
        ).save,
    )
    build_index(model, world["emb"], tmp_path / "index")
    hist = np.ones((3, 5), np.int32)
    table = np.ones((2, QUERY_DIM), np.float32)
    info = {"encoder": "/cache/rubert-tiny2", "pooling": "mean", "dim": QUERY_DIM}
    mean = write_encoded(tmp_path / "mean", np.arange(3), hist, table, info)
    with pytest.raises(SearchrecError, match="encoded with pooling mean but the model was trained on cls"):
        recommend(model, tmp_path / "index", mean, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # Same pooling and dimension from another location of the weights: served.
    cls = write_encoded(tmp_path / "cls", np.arange(3), hist, table, {**info, "pooling": "cls"})
    stats = recommend(model, tmp_path / "index", cls, tmp_path / "out")
    assert stats.users_served > 0


def test_popularity_prior_is_served_through_index_and_infer(world: dict, tmp_path: Path) -> None:
    """A model with the popularity prior: the index holds its extra dimension and every user gets the
    brute-force top-k of cosine + weight * log(1 + purchases)."""
    torch.manual_seed(1)
    model = TwoTower(TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM, popularity_weight=0.3))
    counts = np.random.default_rng(1).integers(0, 50, N_ITEMS).astype(np.float64)
    model.set_popularity(world["nm_ids"], counts)
    model_artifact.write(tmp_path / "model", model.save)
    build_index(tmp_path / "model", world["emb"], tmp_path / "index")
    recommend(tmp_path / "model", tmp_path / "index", world["encoded"], tmp_path / "out", top_k=20)

    loaded, ids, items, queries = _served_towers(world, tmp_path / "model")
    count_of = dict(zip(world["nm_ids"].tolist(), counts.tolist(), strict=True))
    scores = queries @ items.T + 0.3 * np.log1p([count_of[int(i)] for i in ids])[None, :]
    by_user = dict(zip(world["user_ids"].tolist(), scores, strict=True))
    recs = read(tmp_path / "out").to_pylist()
    assert loaded.vector_dim == loaded.cfg.output_dim + 1 and len(recs) == (world["lengths"] >= 1).sum()
    top_counts = []
    for rec in recs:
        s = by_user[rec["user_id"]]
        order = np.argsort(-s, kind="stable")[:20]
        expected = [int(ids[j]) for j in order], [float(s[j]) for j in order]
        assert_same_ranking(rec["nm_ids"], rec["scores"], *expected)
        top_counts += [count_of[i] for i in rec["nm_ids"]]
    assert np.mean(top_counts) > counts.mean() + 5  # the prior pulls popular items up


@pytest.mark.parametrize("offsets", [False, True])
def test_several_interests_are_searched_and_merged_by_the_max_score(
    world: dict, tmp_path: Path, offsets: bool
) -> None:
    """K = 2 interest vectors with the popularity prior: every user gets the brute-force top-k of
    max over interests (cosine, + the interest's offset) + weight * log(1 + purchases), each item once,
    bought items left out."""
    torch.manual_seed(2)
    cfg = TwoTowerConfig(
        query_dim=QUERY_DIM, item_dim=ITEM_DIM, interests=2, popularity_weight=0.05, interest_offsets=offsets
    )
    model = TwoTower(cfg)
    if offsets:  # zero at initialisation: give them weights, so they differ by user and interest
        torch.nn.init.normal_(model.query_tower.offset.weight, std=0.3)
    counts = np.random.default_rng(2).integers(0, 50, N_ITEMS).astype(np.float64)
    model.set_popularity(world["nm_ids"], counts)
    model_artifact.write(tmp_path / "model", model.save)
    build_index(tmp_path / "model", world["emb"], tmp_path / "index")
    loaded, ids, items, queries = _served_towers(world, tmp_path / "model")
    count_of = dict(zip(world["nm_ids"].tolist(), counts.tolist(), strict=True))
    dim = loaded.cfg.output_dim
    assert queries.shape == (N_USERS, 2, dim + offsets)
    per_interest = np.einsum("ukd,nd->ukn", queries[..., :dim], items[:, :dim])
    if offsets:
        assert np.all(items[:, dim] == 1.0) and np.abs(queries[:, 0, dim] - queries[:, 1, dim]).mean() > 0.05
        per_interest += queries[..., dim : dim + 1]
    assert (per_interest.argmax(axis=1) == 1).mean() > 0.1  # the second interest wins for some items
    prior = 0.05 * np.log1p([count_of[int(i)] for i in ids])[None, :]
    by_user = dict(zip(world["user_ids"].tolist(), per_interest.max(axis=1) + prior, strict=True))
    served = world["user_ids"][world["lengths"] >= 1]
    u1 = int(served[0])
    bought = {int(ids[j]) for j in np.argsort(-by_user[u1], kind="stable")[:30:3]}  # 10 of its top 30
    bought_dir = _write_bought(tmp_path / "bought", u1, bought)

    recommend(tmp_path / "model", tmp_path / "index", world["encoded"], tmp_path / "out", top_k=30,
              exclude_bought_dir=bought_dir, batch_size=50)  # fmt: skip

    recs = read(tmp_path / "out").to_pylist()
    assert len(recs) == len(served)
    for rec in recs:
        s, exclude = by_user[rec["user_id"]], bought if rec["user_id"] == u1 else set()
        order = [j for j in np.argsort(-s, kind="stable") if int(ids[j]) not in exclude][:30]
        assert len(rec["nm_ids"]) == len(set(rec["nm_ids"])) == 30
        assert_same_ranking(
            rec["nm_ids"], rec["scores"], [int(ids[j]) for j in order], [float(s[j]) for j in order]
        )
    assert not set(next(r for r in recs if r["user_id"] == u1)["nm_ids"]) & bought


def test_an_interest_quota_is_served_as_brute_force_and_as_evaluated(world: dict, tmp_path: Path) -> None:
    """K = 3 interests, the prior and interest_quota 0.5 (5 of the top 30 held for each interest's own
    best items): every user gets the brute-force quota list (bought items left out before the quota),
    and, for every user without purchases, exactly the list the holdout evaluation ranks."""
    from searchrec.evaluation import encode_items, model_topk

    torch.manual_seed(3)
    cfg = TwoTowerConfig(
        query_dim=QUERY_DIM, item_dim=ITEM_DIM, interests=3, popularity_weight=0.05, interest_quota=0.5
    )
    model = TwoTower(cfg)
    counts = np.random.default_rng(3).integers(0, 50, N_ITEMS).astype(np.float64)
    model.set_popularity(world["nm_ids"], counts)
    model_artifact.write(tmp_path / "model", model.save)
    build_index(tmp_path / "model", world["emb"], tmp_path / "index")
    loaded, ids, items, queries = _served_towers(world, tmp_path / "model")
    assert loaded.cfg.interest_quota == 0.5
    count_of = dict(zip(world["nm_ids"].tolist(), counts.tolist(), strict=True))
    prior = 0.05 * np.log1p([count_of[int(i)] for i in ids])[None, None, :]
    per_interest = np.einsum("ukd,nd->ukn", queries, items) + prior  # [users, 3, items]
    by_user = dict(zip(world["user_ids"].tolist(), per_interest, strict=True))
    served = world["user_ids"][world["lengths"] >= 1]
    u1 = int(served[0])
    bought = {int(ids[j]) for j in np.argsort(-by_user[u1].max(axis=0), kind="stable")[:30:3]}
    bought_dir = _write_bought(tmp_path / "bought", u1, bought)

    recommend(tmp_path / "model", tmp_path / "index", world["encoded"], tmp_path / "out", top_k=30,
              exclude_bought_dir=bought_dir, batch_size=50)  # fmt: skip

    recs = {r["user_id"]: r for r in read(tmp_path / "out").to_pylist()}
    assert sorted(recs) == sorted(served.tolist())
    row_of = {int(i): j for j, i in enumerate(ids)}
    changed = 0
    for user, rec in recs.items():
        exclude = {row_of[i] for i in bought} if user == u1 else set()
        rows, scores = quota_top_k(by_user[user], 30, 0.5, exclude)
        assert len(rec["nm_ids"]) == len(set(rec["nm_ids"])) == 30
        assert_same_ranking(rec["nm_ids"], rec["scores"], [int(ids[j]) for j in rows], scores)
        changed += rows != quota_top_k(by_user[user], 30, 0.0, exclude)[0]
    assert changed > len(recs) // 4  # the quota changed many lists (else this checks the plain max)
    assert not set(recs[u1]["nm_ids"]) & bought

    table = torch.from_numpy(np.load(world["encoded"] / encoded.TABLE_FILE))
    _, hist = encoded.read_split(world["encoded"], examples.INFER_SPLIT, columns=[], table_rows=len(table))
    keep = (world["lengths"] >= 1) & (world["user_ids"] != u1)
    vectors = encode_items(loaded, torch.from_numpy(snapshot.read(world["emb"])[1]), ids)
    evaluated = ids[model_topk(loaded, table, torch.from_numpy(hist[keep]).long(), vectors, 30)]
    for user, expected in zip(world["user_ids"][keep].tolist(), evaluated.tolist(), strict=True):
        assert recs[user]["nm_ids"] == expected


def _write_bought(folder: Path, user_id: int, nm_ids: set[int]) -> Path:
    """An orders folder in which `user_id` bought `nm_ids` (infer's exclude_bought_dir)."""
    orders = {
        "user_id": pa.array([user_id] * len(nm_ids), pa.int64()),
        "order_ts": pa.array([0] * len(nm_ids), pa.timestamp("us")),
        "nm_id": pa.array(sorted(nm_ids), pa.int64()),
    }
    event_parts.write(folder, [pa.table(orders)])
    return folder


def _served_towers(world: dict, model_dir: Path) -> tuple[TwoTower, np.ndarray, np.ndarray, np.ndarray]:
    """For a brute-force check of what infer served: the saved model, the snapshot's item ids, every
    item's vector and every inference user's query vector(s), straight through the towers."""
    table = np.load(world["encoded"] / encoded.TABLE_FILE)
    _, hist = encoded.read_split(world["encoded"], examples.INFER_SPLIT, columns=[], table_rows=len(table))
    ids, emb, _ = snapshot.read(world["emb"])
    loaded = TwoTower.load(model_dir)
    with torch.inference_mode():
        items = loaded.item_tower(torch.from_numpy(emb)).numpy()
        queries = loaded.query_tower(torch.from_numpy(table[hist]), torch.from_numpy(hist != 0)).numpy()
    return loaded, ids, items, queries
