"""Train stage on small synthetic data: items in latent clusters, queries whose encodings reveal them."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from safetensors.torch import load_file

from searchrec import config
from searchrec.artifacts import encoded as encoded_artifact
from searchrec.artifacts import examples as examples_artifact
from searchrec.artifacts import folder
from searchrec.artifacts import model as model_artifact
from searchrec.artifacts import snapshot as snapshot_artifact
from searchrec.errors import SearchrecError
from searchrec.model import TwoTower
from searchrec.stages.train import (
    TrainParams,
    latest_checkpoint,
    popularity_metric,
    scheduled_lr,
    train_two_tower,
)
from tests.brute_force import quota_top_k

DQ, DI, LATENT = 24, 16, 8


def make_inputs(
    root: Path,
    *,
    n_train: int = 3000,
    n_holdout: int = 600,
    n_items: int = 300,
    n_extra_items: int = 100,
    n_queries: int = 600,
    seed: int = 0,
) -> tuple[Path, Path, Path]:
    """encoded/, examples/, embeddings/ folders as the encode, clean and extract stages write them.

    Each item has a latent vector; its bert4rec embedding and the encodings of its 5 closest queries are
    noisy linear images of latents. A purchase's history holds 1-5 queries, 80% of them related to the
    bought item. Item popularity is Zipf-like; the snapshot also holds items nobody bought.
    """
    rng = np.random.default_rng(seed)
    total_items = n_items + n_extra_items
    z = rng.normal(size=(total_items, LATENT))
    item_emb = (z @ rng.normal(size=(LATENT, DI)) + 0.1 * rng.normal(size=(total_items, DI))).astype(
        np.float32
    )
    nm_ids = (100_000 + rng.permutation(total_items) * 7).astype(np.int64)
    v = rng.normal(size=(n_queries, LATENT))
    table = v @ rng.normal(size=(LATENT, DQ)) + 0.1 * rng.normal(size=(n_queries, DQ))
    table = np.vstack([rng.normal(size=(1, DQ)), table])  # row 0: the [PAD] encoding
    table = (table / np.linalg.norm(table, axis=1, keepdims=True)).astype(np.float32)
    related = np.argsort(-(z[:n_items] @ v.T), axis=1)[:, :5] + 1  # table rows of each item's queries
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()

    def split(n: int, start: str) -> tuple[pd.DataFrame, np.ndarray]:
        items = rng.choice(n_items, size=n, p=popularity)
        hist = np.zeros((n, 5), dtype=np.int32)
        lengths = rng.integers(1, 6, size=n)
        for r in range(n):
            for slot in range(5 - lengths[r], 5):
                hist[r, slot] = (
                    related[items[r], rng.integers(5)]
                    if rng.random() < 0.8
                    else rng.integers(1, n_queries + 1)
                )
        rows = pd.DataFrame(
            {
                "user_id": rng.integers(1, 10_000, size=n).astype(np.int64),
                "order_ts": pd.Timestamp(start)
                + pd.to_timedelta(np.sort(rng.integers(0, 86400 * 7, n)), unit="s"),
                "nm_id": nm_ids[items],
            }
        )
        return rows, hist

    encoded, examples, embeddings = root / "encoded", root / "examples", root / "embeddings"
    splits = {
        name: split(n, start)
        for name, n, start in (("train", n_train, "2026-09-01"), ("holdout", n_holdout, "2026-10-01"))
    }
    write_encoded(encoded, table, splits)
    counts = splits["train"][0]["nm_id"].value_counts()
    items = pa.table({"nm_id": counts.index.to_numpy(np.int64), "count": counts.to_numpy().astype(np.int64)})
    examples_artifact.write(examples, {examples_artifact.ITEMS_FILE: items}, [])
    write_snapshot(embeddings, nm_ids, item_emb)
    return encoded, examples, embeddings


def write_encoded(
    folder: Path,
    table: np.ndarray,
    splits: dict[str, tuple[pd.DataFrame, np.ndarray]],
    info: dict | None = None,
) -> None:
    """An encode output artifact (published the one way, completion marker last)."""
    parts = [
        encoded_artifact.EncodedSplit(name, pa.Table.from_pandas(rows, preserve_index=False), hist)
        for name, (rows, hist) in splits.items()
    ]
    texts = [f"q{i}" for i in range(1, len(table))]
    info = info or {
        "encoder": "test/synthetic",
        "pooling": "cls",
        "dim": int(table.shape[1]),
        "max_length": 32,
    }
    encoded_artifact.write(folder, table, texts, parts, info)


def write_snapshot(folder: Path, nm_ids: np.ndarray, emb: np.ndarray | list) -> None:
    embedding = pa.array([list(map(float, e)) for e in emb], pa.list_(pa.float32()))
    table = pa.table(
        {"nm_id": pa.array(nm_ids, pa.int64()), "embedding": embedding}, schema=snapshot_artifact.EMBEDDINGS
    )
    dim = len(emb[0])
    info = snapshot_artifact.SnapshotInfo(
        "test://snapshot", "2026-09-30", "2026-09-30", dim, len(nm_ids), ["part-0.parquet"]
    )
    snapshot_artifact.write(folder, table, info)


def read_encoded(folder: Path) -> tuple[np.ndarray, dict[str, tuple[pd.DataFrame, np.ndarray]]]:
    table = np.load(folder / encoded_artifact.TABLE_FILE)
    splits = {
        name: (
            pd.read_parquet(folder / examples_artifact.split_file(name)),
            np.load(folder / encoded_artifact.hist_file(name)),
        )
        for name in ("train", "holdout")
    }
    return table, splits


FAST = TrainParams(
    epochs=3,
    batch_size=128,
    hidden_dim=64,
    output_dim=32,
    lr=3e-3,
    eval_max_examples=300,
    sampled_negatives=64,
    validation_days=2,
    patience=0,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine run faster (and without OMP spin-waits) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    out = {}
    for name in (model_artifact.QUERY_TOWER_FILE, model_artifact.ITEM_TOWER_FILE):
        out.update({f"{name}:{k}": v for k, v in load_file(str(model_dir / name)).items()})
    return out


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_model_learns_and_beats_popularity(inputs, tmp_path: Path) -> None:
    model_dir, report = tmp_path / "model", tmp_path / "report.html"
    result = train_two_tower(
        *inputs,
        model_dir,
        params=replace(FAST, train_start="2026-09-01", train_end="2026-09-30"),
        report_path=report,
    )
    m = result.metrics
    assert m["model_recall_at_10"] > m["popularity_recall_at_10"] + 0.25, m
    assert m["model_recall_at_50"] > m["popularity_recall_at_50"] + 0.15, m
    assert m["model_mrr"] > 2 * m["popularity_mrr"], m
    assert m["catalogue_items"] == 400 and m["holdout_examples"] == 600  # the FULL snapshot is ranked
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[-1]["holdout_recall_at_10"] > result.history[0]["holdout_recall_at_10"] - 0.05
    # per-epoch evaluation is timed, and its share of the run is what the metadata says
    assert all(r["eval_seconds"] > 0 for r in result.history)
    spent = sum(r["eval_seconds"] for r in result.history)
    assert result.as_metadata()["eval_share"] == pytest.approx(spent / result.seconds, abs=1e-4)

    cfg = json.loads((model_dir / model_artifact.CONFIG_FILE).read_text())
    assert (cfg["query_dim"], cfg["item_dim"], cfg["history_length"], cfg["padding"]) == (DQ, DI, 5, "mask")
    extra = cfg["extra"]
    assert extra["encoder"] == "test/synthetic" and extra["pooling"] == "cls"
    assert (extra["train_start"], extra["train_end"], extra["snapshot_date"]) == (
        "2026-09-01",
        "2026-09-30",
        "2026-09-30",
    )
    assert extra["training_items"] == len(pd.read_parquet(inputs[1] / "items.parquet"))
    assert extra["metrics"]["model_recall_at_200"] == pytest.approx(m["model_recall_at_200"], abs=1e-6)

    meta = result.as_metadata()
    assert meta["model_recall_at_200"] == pytest.approx(m["model_recall_at_200"], abs=1e-6)
    assert meta["param_loss"] == "softmax"
    # the last 2 days of the train split are the validation split: never trained on
    assert (
        meta["train_examples"] + extra["validation_examples"] == 3000 and extra["validation_examples"] > 500
    )
    assert extra["validation_start"] == "2026-09-06" and meta["validation_start"] == "2026-09-06"
    assert all(isinstance(v, (int, float, str, bool)) or v is None for v in meta.values())

    # The artifact loads without pickle and ranks like the training-time evaluation did.
    model = TwoTower.load(model_dir)
    table = torch.from_numpy(np.load(inputs[0] / encoded_artifact.TABLE_FILE))
    hist = torch.from_numpy(np.load(inputs[0] / "holdout_hist.npy"))
    q = model.encode_indices(table, hist)
    k = config.INTERESTS  # one unit vector per interest (the default's K)
    assert q.shape == ((600, 32) if k == 1 else (600, k, 32))
    assert torch.allclose(q.norm(dim=-1), torch.ones(q.shape[:-1]), atol=1e-5)

    html = report.read_text()
    assert html.count("<svg") == 2 and "Recall@200" in html and "softmax" in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # the per-epoch samples (eval_max_examples 300; the holdout curve at most config.CURVE_SAMPLE of them)
    assert (extra["epoch_validation_rows"], extra["epoch_holdout_rows"]) == (300, 300)
    assert "Each epoch scores the same rows: validation 300 rows, holdout curve 300 rows" in html


def test_same_seed_gives_identical_weights(inputs, tmp_path: Path) -> None:
    params = replace(FAST, epochs=1, eval_every_epoch=False)
    train_two_tower(*inputs, tmp_path / "a", params=params)
    train_two_tower(*inputs, tmp_path / "b", params=params)
    train_two_tower(*inputs, tmp_path / "c", params=replace(params, seed=1))
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert not _same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def test_interrupted_run_resumes_to_the_same_weights(inputs, tmp_path: Path) -> None:
    """At a constant lr a run stopped after epoch 2 continues to epoch 3 as if it had planned 3 epochs."""
    params = replace(FAST, epochs=3, eval_every_epoch=False, keep_checkpoints=2, lr_schedule="constant")
    full = train_two_tower(*inputs, tmp_path / "full", params=params)
    assert full.resumed_from_epoch == 0
    # "Crash" after epoch 2: the checkpoints exist, the final model files do not.
    part = tmp_path / "part"
    train_two_tower(*inputs, part, params=replace(params, epochs=2))
    for name in (model_artifact.CONFIG_FILE, model_artifact.QUERY_TOWER_FILE, model_artifact.ITEM_TOWER_FILE):
        (part / name).unlink()
    assert latest_checkpoint(part) == 2
    resumed = train_two_tower(*inputs, part, params=params)
    assert resumed.resumed_from_epoch == 2
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert _same(_weights(tmp_path / "full"), _weights(part))
    assert resumed.history[-1]["loss"] == full.history[-1]["loss"]
    ckpts = sorted(p.name for p in (part / "checkpoints").iterdir())
    assert ckpts == [
        "best.safetensors",
        "epoch-0002.json",
        "epoch-0002.safetensors",
        "epoch-0003.json",
        "epoch-0003.safetensors",
    ]


def test_a_checkpoint_written_before_the_interests_option_resumes(inputs, tmp_path: Path) -> None:
    params = replace(FAST, epochs=2, eval_every_epoch=False, interests=1, lr_schedule="constant")  # as then
    train_two_tower(*inputs, tmp_path / "m", params=replace(params, epochs=1))
    meta_path = tmp_path / "m" / "checkpoints" / "epoch-0001.json"
    meta = json.loads(meta_path.read_text())
    for key in ("interests", "interest_offsets"):  # as the code before the option wrote them
        del meta["fingerprint"][key], meta["config"][key]
    for key in ("interest_diversity", "lr_schedule"):  # training settings only: not in the model config
        del meta["fingerprint"][key]
    meta_path.write_text(json.dumps(meta))
    assert train_two_tower(*inputs, tmp_path / "m", params=params).resumed_from_epoch == 1
    with pytest.raises(SearchrecError, match="interests=1 but the inputs/params give 2"):
        train_two_tower(*inputs, tmp_path / "m", params=replace(params, epochs=3, interests=2))


def test_checkpoint_from_other_dimensions_is_refused(inputs, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    train_two_tower(*inputs, model_dir, params=replace(FAST, epochs=1, eval_every_epoch=False))
    other = tmp_path / "other"
    table, splits = read_encoded(inputs[0])
    write_encoded(other / "encoded", np.ascontiguousarray(table[:, :20]), splits)
    with pytest.raises(SearchrecError, match="query_dim=24.*20"):
        train_two_tower(other / "encoded", inputs[1], inputs[2], model_dir, params=replace(FAST, epochs=2))
    with pytest.raises(SearchrecError, match="other parameters"):
        train_two_tower(*inputs, model_dir, params=replace(FAST, epochs=2, lr=1e-2))


@pytest.mark.parametrize(
    ("loss", "padding", "logq"),
    [
        ("multi_margin", "pad", False),
        ("cosine", "pad", False),
        ("softmax", "pad", True),
        ("multi_margin", "mask", False),
    ],
)
def test_each_objective_trains(inputs, tmp_path: Path, loss: str, padding: str, logq: bool) -> None:
    params = replace(FAST, epochs=2, loss=loss, padding=padding, logq_correction=logq, eval_every_epoch=False)
    result = train_two_tower(*inputs, tmp_path / "m", params=params)
    assert result.history[1]["loss"] < result.history[0]["loss"]
    assert result.metrics["model_recall_at_50"] > result.metrics["popularity_recall_at_50"], result.metrics
    assert json.loads((tmp_path / "m" / model_artifact.CONFIG_FILE).read_text())["padding"] == padding


def test_mask_padding_ignores_the_pad_encoding(inputs, tmp_path: Path) -> None:
    concat = replace(FAST, epochs=1, eval_every_epoch=False, query_tower="concat")  # padding: concat only
    train_two_tower(*inputs, tmp_path / "mask", params=concat)
    train_two_tower(*inputs, tmp_path / "pad", params=replace(concat, padding="pad"))
    table = torch.from_numpy(np.load(inputs[0] / encoded_artifact.TABLE_FILE))
    other = table.clone()
    other[0] = torch.randn(DQ)
    hist = torch.from_numpy(np.load(inputs[0] / "holdout_hist.npy"))[:50]
    assert (hist == 0).any()
    mask_model, pad_model = TwoTower.load(tmp_path / "mask"), TwoTower.load(tmp_path / "pad")
    assert torch.equal(mask_model.encode_indices(table, hist), mask_model.encode_indices(other, hist))
    assert not torch.allclose(pad_model.encode_indices(table, hist), pad_model.encode_indices(other, hist))


def _no_model(model_dir: Path) -> bool:
    return (
        not (model_dir / model_artifact.CONFIG_FILE).exists()
        and not (model_dir / model_artifact.QUERY_TOWER_FILE).exists()
    )


def test_empty_train_split_is_refused(inputs, tmp_path: Path) -> None:
    encoded = tmp_path / "encoded"
    table, splits = read_encoded(inputs[0])
    splits["train"] = (splits["train"][0].iloc[:0], np.zeros((0, 5), dtype=np.int32))
    write_encoded(encoded, table, splits)
    with pytest.raises(SearchrecError, match="train split .* is empty"):
        train_two_tower(encoded, inputs[1], inputs[2], tmp_path / "model", params=FAST)
    assert _no_model(tmp_path / "model")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("half_written", "encoded queries artifact .* was never finished"),
        ("missing_hist", "incomplete: train_hist.npy is missing"),
        ("index_out_of_range", "outside the encoding table"),
        ("rows_mismatch", "has 2999 rows but train.parquet has 3000"),
        ("ragged_embeddings", "1 embeddings have length 3 .*expected 16"),
        ("non_finite_embeddings", "NaN or infinite"),
        ("missing_items", "lacks items.parquet"),
        ("encoder_dim", "dimension 24, expected 99"),
    ],
)
def test_bad_input_gives_one_clear_error(inputs, tmp_path: Path, breakage: str, message: str) -> None:
    encoded, examples, embeddings = tmp_path / "encoded", tmp_path / "examples", tmp_path / "embeddings"
    for src, dst in zip(inputs, (encoded, examples, embeddings), strict=True):
        shutil.copytree(src, dst)
    table, splits = read_encoded(inputs[0])
    rows, hist = splits["train"]
    snapshot = pd.read_parquet(inputs[2] / "part-0.parquet")
    if breakage == "half_written":
        (encoded / folder.COMPLETE_MARKER).unlink()
        (encoded / folder.IN_PROGRESS_MARKER).write_text("encoded queries\n")
    elif breakage == "missing_hist":
        (encoded / "train_hist.npy").unlink()
    elif breakage in ("index_out_of_range", "rows_mismatch", "encoder_dim"):
        if breakage == "index_out_of_range":
            hist = hist.copy()
            hist[0, 4] = 10**6
        splits["train"] = (rows, hist[1:] if breakage == "rows_mismatch" else hist)
        info = {"encoder": "x", "dim": 99} if breakage == "encoder_dim" else None
        write_encoded(encoded, table, splits, info)
    elif breakage in ("ragged_embeddings", "non_finite_embeddings"):
        emb = [list(e) for e in snapshot["embedding"]]
        if breakage == "ragged_embeddings":
            emb[-1] = emb[-1][:3]
        else:
            emb[0][0] = float("nan")
        write_snapshot(embeddings, snapshot["nm_id"].to_numpy(), emb)
    elif breakage == "missing_items":
        examples_artifact.write(examples, {}, [])
    with pytest.raises(SearchrecError, match=message) as info:
        train_two_tower(encoded, examples, embeddings, tmp_path / "model", params=FAST)
    assert "\n" not in str(info.value)
    assert _no_model(tmp_path / "model")


def test_bad_params_are_refused(inputs, tmp_path: Path) -> None:
    with pytest.raises(SearchrecError, match="loss must be one of"):
        train_two_tower(*inputs, tmp_path / "m", params=replace(FAST, loss="hinge"))
    with pytest.raises(SearchrecError, match="padding must be one of"):
        train_two_tower(*inputs, tmp_path / "m", params=replace(FAST, padding="zeros"))
    with pytest.raises(SearchrecError, match="batch_size"):
        train_two_tower(*inputs, tmp_path / "m", params=replace(FAST, batch_size=1))
    with pytest.raises(SearchrecError, match="lr_schedule must be one of constant, cosine, got 'linear'"):
        train_two_tower(*inputs, tmp_path / "m", params=replace(FAST, lr_schedule="linear"))


def test_saved_config_that_does_not_match_the_weights_is_refused(inputs, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    train_two_tower(*inputs, model_dir, params=replace(FAST, epochs=1, eval_every_epoch=False))
    cfg = json.loads((model_dir / model_artifact.CONFIG_FILE).read_text())
    (model_dir / model_artifact.CONFIG_FILE).write_text(json.dumps({**cfg, "query_dim": 312}))
    with pytest.raises(SearchrecError, match="does not match config.json"):
        TwoTower.load(model_dir)


def _noisy_validation(inputs, root: Path, seed: int = 0) -> Path:
    """A copy of the encoded folder whose validation rows (the train split's last 2 days) bought random
    items: their score wanders from epoch to epoch, so the best epoch is not simply the last one."""
    encoded = root / "encoded"
    table, splits = read_encoded(inputs[0])
    rows, hist = splits["train"]
    val = rows["order_ts"] >= pd.Timestamp("2026-09-06")
    snapshot = pd.read_parquet(inputs[2] / "part-0.parquet")["nm_id"].to_numpy()
    rows.loc[val, "nm_id"] = np.random.default_rng(seed).choice(snapshot, int(val.sum()))
    splits["train"] = (rows, hist)
    write_encoded(encoded, table, splits)
    return encoded


def test_saved_model_is_the_best_validation_epoch(inputs, tmp_path: Path) -> None:
    encoded = _noisy_validation(inputs, tmp_path)
    params = replace(
        FAST, epochs=5, eval_every_epoch=True, keep_checkpoints=5, selection_metric="recall_at_200"
    )
    result = train_two_tower(encoded, inputs[1], inputs[2], tmp_path / "model", params=params)
    scores = [row["validation_recall_at_200"] for row in result.history]
    best = int(np.argmax(scores)) + 1
    assert result.best_epoch == best and best != len(scores), scores  # not just the last epoch
    checkpoint = load_file(str(tmp_path / "model" / "checkpoints" / f"epoch-{best:04d}.safetensors"))
    saved = TwoTower.load(tmp_path / "model").state_dict()
    assert all(torch.equal(saved[k], checkpoint[f"model.{k}"]) for k in saved)
    last = load_file(str(tmp_path / "model" / "checkpoints" / f"epoch-{len(scores):04d}.safetensors"))
    assert not all(torch.equal(saved[k], last[f"model.{k}"]) for k in saved)
    assert result.metrics["best_epoch"] == best and "holdout_recall_at_200" in result.history[0]
    assert (
        json.loads((tmp_path / "model" / model_artifact.CONFIG_FILE).read_text())["extra"]["best_epoch"]
        == best
    )


def test_early_stopping_ends_after_patience_epochs_without_improvement(inputs, tmp_path: Path) -> None:
    encoded = _noisy_validation(inputs, tmp_path)
    params = replace(FAST, epochs=8, eval_every_epoch=False, patience=1, selection_metric="recall_at_200")
    result = train_two_tower(encoded, inputs[1], inputs[2], tmp_path / "model", params=params)
    scores = [row["validation_recall_at_200"] for row in result.history]
    assert len(scores) < 8 and scores[-1] <= max(
        scores[:-1]
    )  # stopped at the first epoch that did not improve
    assert all(b > a for a, b in zip(scores[:-2], scores[1:-1], strict=True))
    assert result.best_epoch == len(scores) - 1


def test_mixed_negatives_draw_items_outside_the_training_targets(inputs, tmp_path: Path) -> None:
    """The snapshot holds 100 items nobody bought: the shared negatives reach them, in-batch ones never do."""
    for sampling in ("uniform", "popularity"):
        params = replace(FAST, epochs=1, eval_every_epoch=False, negative_sampling=sampling)
        result = train_two_tower(*inputs, tmp_path / sampling, params=params)
        row = result.history[0]
        drawn = row["examples"] // FAST.batch_size * FAST.sampled_negatives
        assert 0 < row["sampled_outside_targets"] < drawn, row
        assert result.metrics["model_recall_at_50"] > result.metrics["popularity_recall_at_50"]
    no_sampling = train_two_tower(*inputs, tmp_path / "none", params=replace(params, sampled_negatives=0))
    assert "sampled_outside_targets" not in no_sampling.history[0]


def test_both_query_towers_train_and_load(inputs, tmp_path: Path) -> None:
    concat = train_two_tower(*inputs, tmp_path / "c", params=replace(FAST, epochs=2, query_tower="concat"))
    assert concat.metrics["model_recall_at_10"] > concat.metrics["popularity_recall_at_10"] + 0.2
    assert TwoTower.load(tmp_path / "c").cfg.query_tower == "concat"
    params = replace(FAST, epochs=2, eval_every_epoch=False, query_tower="attention")
    result = train_two_tower(*inputs, tmp_path / "m", params=params)
    assert result.metrics["model_recall_at_10"] > result.metrics["popularity_recall_at_10"] + 0.2, (
        result.metrics
    )
    model = TwoTower.load(tmp_path / "m")
    assert model.cfg.query_tower == "attention"
    table = torch.from_numpy(np.load(inputs[0] / encoded_artifact.TABLE_FILE))
    hist = torch.from_numpy(np.load(inputs[0] / "holdout_hist.npy"))[:8]
    other = table.clone()
    other[0] = torch.randn_like(other[0])  # padded slots get no attention: the [PAD] row does not matter
    assert torch.allclose(model.encode_indices(table, hist), model.encode_indices(other, hist), atol=1e-6)


def test_popularity_weight_is_chosen_on_validation_and_saved(inputs, tmp_path: Path) -> None:
    from searchrec import config

    result = train_two_tower(*inputs, tmp_path / "m", params=replace(FAST, epochs=2, eval_every_epoch=False))
    scores = {w: result.metrics[popularity_metric("ndcg_at_200", w)] for w in config.POPULARITY_WEIGHTS}
    best = max(scores.values())
    assert result.metrics["popularity_weight"] == min(w for w, v in scores.items() if v == best)
    assert result.metrics["popularity_weight"] > 0, scores  # the synthetic items' popularity is Zipf-like
    model = TwoTower.load(tmp_path / "m")
    assert model.cfg.popularity_weight == result.metrics["popularity_weight"]
    assert (tmp_path / "m" / model_artifact.POPULARITY_FILE).is_file()
    train = pd.read_parquet(inputs[0] / examples_artifact.split_file("train"))
    top = train["nm_id"].value_counts()  # the served counts: the whole train split
    assert model.popularity_feature(top.index[:3].to_numpy()) == pytest.approx(np.log1p(top.to_numpy()[:3]))

    off = train_two_tower(
        *inputs,
        tmp_path / "off",
        params=replace(FAST, epochs=2, eval_every_epoch=False, popularity_prior=False),
    )
    assert "popularity_weight" not in off.metrics
    assert TwoTower.load(tmp_path / "off").cfg.popularity_weight == 0.0
    assert not (tmp_path / "off" / model_artifact.POPULARITY_FILE).exists()


@pytest.mark.parametrize("offsets", [False, True])
def test_several_interests_train_and_the_holdout_ranks_by_the_max_over_them(
    inputs, tmp_path: Path, offsets: bool
) -> None:
    """interests=2: the saved model gives two vectors per user, and the holdout metrics are those of the
    brute-force ranking of every snapshot item by max over interests + the prior (what infer serves)."""
    from searchrec.evaluation import encode_items, ranking_metrics
    from searchrec.stages.train import load_training_data

    params = replace(FAST, epochs=2, eval_every_epoch=False, interests=2, interest_offsets=offsets)
    params = replace(params, interest_quota=False)  # the plain max (the quota: the test below)
    result = train_two_tower(*inputs, tmp_path / "m", params=params)
    model = TwoTower.load(tmp_path / "m")
    assert model.cfg.interests == 2 and result.params["interests"] == 2
    assert model.cfg.interest_offsets is offsets
    assert result.metrics["model_recall_at_10"] > result.metrics["popularity_recall_at_10"] + 0.2
    data = load_training_data(*inputs, validation_days=FAST.validation_days)
    with torch.no_grad():
        hist = torch.from_numpy(data.holdout_hist).long()
        queries = model.query_vectors(torch.from_numpy(data.table)[hist], hist != 0)
        items = encode_items(model, torch.from_numpy(data.item_emb), data.item_ids)
        scores = torch.einsum("ukd,nd->ukn", queries, items).amax(dim=1)
    assert queries.shape == (len(hist), 2, model.vector_dim)
    top = data.item_ids[torch.topk(scores, 200, dim=1).indices.numpy()]
    expected = ranking_metrics(top, data.holdout["nm_id"].to_numpy(), "model")
    for key in ("model_recall_at_10", "model_recall_at_200", "model_mrr"):
        assert result.metrics[key] == pytest.approx(expected[key], abs=1e-6), key  # one interest: 0.005 off
    with pytest.raises(SearchrecError, match="interests must be at least 1"):
        train_two_tower(*inputs, tmp_path / "bad", params=replace(FAST, interests=0))


@pytest.mark.parametrize("min_gain", [0.0, config.INTEREST_QUOTA_MIN_GAIN])
def test_interest_quota_is_chosen_on_validation_and_used_on_the_holdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, min_gain: float
) -> None:
    """interests=3: every quota of config.INTEREST_QUOTAS is scored on the validation split (the recorded
    scores are a brute-force ranking of the validation sample, with the prior's counts from before it),
    the best (the smallest on ties) is saved in the model where it beats 0 by more than the minimum
    gain, and the holdout metrics are those of the brute-force ranking at the saved quota."""
    monkeypatch.setattr(config, "INTEREST_QUOTA_MIN_GAIN", min_gain)
    from searchrec.evaluation import encode_items, ranking_metrics
    from searchrec.stages.train import _eval_split, load_training_data, quota_metric

    inputs = make_inputs(tmp_path / "inputs", n_extra_items=1500)  # a catalogue where rank 200 matters
    # constant lr: the run whose validation scores give a quota the (small) win this test needs
    params = replace(
        FAST, epochs=2, eval_every_epoch=False, interests=3, interest_quota=True, lr_schedule="constant"
    )
    result = train_two_tower(*inputs, tmp_path / "m", params=params, report_path=tmp_path / "r.html")
    scores = {q: result.metrics[quota_metric("ndcg_at_200", q)] for q in config.INTEREST_QUOTAS}
    chosen = result.metrics["interest_quota"]
    best = min(q for q, v in scores.items() if v == max(scores.values()))
    assert chosen == (best if scores[best] - scores[0.0] > min_gain else 0.0), scores
    assert chosen > 0 if min_gain == 0.0 else chosen == 0.0, scores  # here a quota wins, by less than 0.001
    weight = result.metrics["popularity_weight"]
    assert scores[0.0] == result.metrics[popularity_metric("ndcg_at_200", weight)]  # same split, same prior
    model = TwoTower.load(tmp_path / "m")
    assert model.cfg.interest_quota == chosen and model.cfg.extra["interest_quota"] == chosen
    assert result.as_metadata()["interest_quota"] == chosen
    report = (tmp_path / "r.html").read_text()
    assert f"interest quota {chosen:.4f}" in report and "best validation ndcg_at_200 " in report

    data = load_training_data(*inputs, validation_days=FAST.validation_days)
    val = _eval_split(data.val_hist, data.val_nm_ids, FAST.eval_max_examples, FAST.seed, "cpu")

    def brute(hist: np.ndarray, true: np.ndarray, quota: float) -> dict[str, float]:
        with torch.no_grad():
            h = torch.from_numpy(np.asarray(hist)).long()
            queries = model.query_vectors(torch.from_numpy(data.table)[h], h != 0)
            items = encode_items(model, torch.from_numpy(data.item_emb), data.item_ids)
            per_interest = torch.einsum("ukd,nd->ukn", queries, items).numpy()
        top = [quota_top_k(s, 200, quota)[0] for s in per_interest]
        return ranking_metrics(data.item_ids[np.array(top)], true, "model")

    served = model.popularity
    model.set_popularity(data.item_ids, data.item_counts)  # as on validation: counts from before it
    for quota in {0.0, chosen, 1.0}:
        m = brute(val.hist.numpy(), val.true_ids, quota)
        assert m["model_ndcg_at_200"] == pytest.approx(scores[quota], abs=1e-6), quota
        assert m["model_recall_at_200"] == pytest.approx(
            result.metrics[quota_metric("recall_at_200", quota)], abs=1e-6
        )
    model.popularity = served
    m = brute(data.holdout_hist, data.holdout["nm_id"].to_numpy(), chosen)
    for key in ("model_recall_at_10", "model_recall_at_200", "model_ndcg_at_200"):
        assert result.metrics[key] == pytest.approx(m[key], abs=1e-6), key


def _mean_interest_cosine(model_dir: Path, inputs) -> float:
    """Mean over validation users and pairs of interests of the cosine between the two vectors."""
    from searchrec.stages.train import load_training_data

    model = TwoTower.load(model_dir)
    data = load_training_data(*inputs, validation_days=FAST.validation_days)
    with torch.no_grad():
        hist = torch.from_numpy(data.val_hist).long()
        q = model.query_tower(torch.from_numpy(data.table)[hist], hist != 0)
    cos = q @ q.transpose(1, 2)
    i, j = torch.triu_indices(q.shape[1], q.shape[1], offset=1)
    return float(cos[:, i, j].mean())


def test_interest_diversity_keeps_a_users_interests_apart(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """interest_diversity > 0 lowers the mean cosine between a user's interest vectors; at 0 the term is
    never computed (the loss and the weights are the ones before the option); with one interest it is
    zero, so the weights are those of 0, bit for bit."""
    import searchrec.stages.train as train_stage

    params = replace(FAST, epochs=2, eval_every_epoch=False, popularity_prior=False, interests=3)
    with_term = train_two_tower(*inputs, tmp_path / "on", params=replace(params, interest_diversity=1.0))
    assert with_term.params["interest_diversity"] == 1.0
    with monkeypatch.context() as patch:
        patch.setattr(train_stage, "interest_diversity", None)  # calling it would fail
        train_two_tower(*inputs, tmp_path / "off", params=params)
    on, off = _mean_interest_cosine(tmp_path / "on", inputs), _mean_interest_cosine(tmp_path / "off", inputs)
    assert on < off - 0.05, (on, off)  # measured: 0.87 against 0.96
    single = replace(params, interests=1)
    train_two_tower(*inputs, tmp_path / "one", params=single)
    train_two_tower(*inputs, tmp_path / "one_term", params=replace(single, interest_diversity=1.0))
    assert _same(_weights(tmp_path / "one"), _weights(tmp_path / "one_term"))
    with pytest.raises(SearchrecError, match="other parameters"):  # the weights depend on it: no resume
        train_two_tower(*inputs, tmp_path / "off", params=replace(params, epochs=3, interest_diversity=0.5))
    with pytest.raises(SearchrecError, match="interest_diversity must be >= 0"):
        train_two_tower(*inputs, tmp_path / "bad", params=replace(params, interest_diversity=-0.1))


def test_scheduled_lr_at_start_middle_and_end() -> None:
    """constant: the lr at every step. cosine: linear warm-up to the lr over the first share of the
    steps, then half a cosine down to floor x lr at the last planned step."""
    lr, total = 0.002, 200
    assert all(scheduled_lr(lr, step, total, "constant") == lr for step in (0, 1, 100, 199, 500))
    cos = [scheduled_lr(lr, step, total, "cosine", warmup=0.05, floor=0.01) for step in range(total)]
    assert cos[0] == pytest.approx(lr / 10) and cos[4] == pytest.approx(lr / 2)  # 10 warm-up steps
    assert cos[9] == pytest.approx(lr) and cos[10] == pytest.approx(lr)  # the top: end of warm-up
    assert all(a <= b for a, b in zip(cos[:10], cos[1:11], strict=True))  # warm-up rises
    assert all(a >= b for a, b in zip(cos[10:], cos[11:], strict=False))  # then it only falls
    middle = 10 + (total - 1 - 10) / 2  # half-way through the decay: half-way between lr and the floor
    assert scheduled_lr(lr, middle, total, "cosine", warmup=0.05, floor=0.01) == pytest.approx(
        lr * (0.01 + 0.99 / 2)
    )
    assert cos[-1] == pytest.approx(0.01 * lr)
    assert scheduled_lr(lr, 0, total, "cosine", warmup=0.0, floor=0.0) == pytest.approx(lr)  # no warm-up
    assert scheduled_lr(lr, total - 1, total, "cosine", warmup=0.0, floor=0.0) == pytest.approx(0.0)
    with pytest.raises(SearchrecError, match="lr_schedule must be one of"):
        scheduled_lr(lr, 0, total, "step")


def test_constant_lr_schedule_never_touches_the_learning_rate(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "constant" is the training before the option, bit for bit: the schedule is never consulted and the
    optimizer keeps params.lr; "cosine" trains other weights."""
    import searchrec.stages.train as train_stage

    params = replace(FAST, epochs=2, eval_every_epoch=False, popularity_prior=False, lr_schedule="constant")
    with monkeypatch.context() as patch:
        patch.setattr(train_stage, "scheduled_lr", None)  # calling it would fail
        constant = train_two_tower(*inputs, tmp_path / "constant", params=params)
    assert all("lr" not in row for row in constant.history)
    assert (
        constant.params["lr_schedule"] == "constant"
        and constant.as_metadata()["param_lr_schedule"] == "constant"
    )
    train_two_tower(*inputs, tmp_path / "again", params=params)
    assert _same(_weights(tmp_path / "constant"), _weights(tmp_path / "again"))
    cosine = train_two_tower(*inputs, tmp_path / "cosine", params=replace(params, lr_schedule="cosine"))
    assert not _same(_weights(tmp_path / "constant"), _weights(tmp_path / "cosine"))
    assert cosine.history[0]["lr"] > cosine.history[1]["lr"] == pytest.approx(config.LR_FLOOR * params.lr)
    assert json.loads((tmp_path / "cosine" / model_artifact.CONFIG_FILE).read_text())["extra"][
        "lr_schedule"
    ] == ("cosine")


def test_a_run_under_the_cosine_schedule_resumes_to_the_same_weights(
    inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lr is a function of the global step (no scheduler state): a run that crashed in epoch 3 and is
    resumed ends with the weights of the uninterrupted run. The planned epochs shape the schedule, so a
    checkpoint is not resumed with other epochs."""
    import searchrec.stages.train as train_stage

    params = replace(FAST, epochs=3, eval_every_epoch=False, lr_schedule="cosine")
    full = train_two_tower(*inputs, tmp_path / "full", params=params)
    part = tmp_path / "part"
    epoch_of_training = train_stage._train_epoch

    def crash_in_epoch_3(model, optimizer, run, params, epoch):
        if epoch == 3:
            raise KeyboardInterrupt("the node went away")
        return epoch_of_training(model, optimizer, run, params, epoch)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(train_stage, "_train_epoch", crash_in_epoch_3)
        train_two_tower(*inputs, part, params=params)
    assert latest_checkpoint(part) == 2
    with pytest.raises(SearchrecError, match="other parameters"):
        train_two_tower(*inputs, part, params=replace(params, epochs=4))
    resumed = train_two_tower(*inputs, part, params=params)
    assert resumed.resumed_from_epoch == 2
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in full.history]
    assert resumed.history[-1]["loss"] == full.history[-1]["loss"]
    assert _same(_weights(tmp_path / "full"), _weights(part))


@pytest.mark.parametrize(
    ("eval_max", "curve", "validation", "holdout"), [(300, 100, 300, 100), (0, 100, 0, 600)]
)
def test_per_epoch_evaluation_scores_fixed_samples_the_holdout_curve_a_smaller_one(
    inputs, monkeypatch, eval_max: int, curve: int, validation: int, holdout: int
) -> None:
    """Validation (it selects) on eval_max_examples rows, the holdout curve (a report line) on at most
    config.CURVE_SAMPLE of them; 0: both whole. The same rows every epoch, each drawn once."""
    from searchrec.stages.train import _prepare_run, load_training_data

    monkeypatch.setattr(config, "CURVE_SAMPLE", curve)
    data = load_training_data(*inputs, validation_days=FAST.validation_days)
    params = replace(FAST, eval_max_examples=eval_max)
    run = _prepare_run(data, params, torch.device("cpu"))
    assert len(run.validation.true_ids) == (validation or len(data.val_hist))
    assert len(run.holdout_curve.true_ids) == holdout  # 600: the whole holdout
    rerun = _prepare_run(data, params, torch.device("cpu"))
    assert torch.equal(rerun.holdout_curve.hist, run.holdout_curve.hist)
    rows = {tuple(r) for r in run.holdout_curve.hist.tolist()}
    assert rows <= {tuple(r) for r in data.holdout_hist.tolist()}
