"""encode stage: each distinct query encoded once; histories as right-aligned table indices."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may reach a model hub, before transformers is imported
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

from searchrec import config  # noqa: E402
from searchrec.artifacts import encoded  # noqa: E402
from searchrec.artifacts import examples as examples_artifact  # noqa: E402
from searchrec.artifacts import folder as artifact_folder  # noqa: E402
from searchrec.encoder import EncoderSpec, build_standin_encoder, encode_texts, load_encoder  # noqa: E402
from searchrec.errors import SearchrecError  # noqa: E402
from searchrec.stages.encode import EncodeStats, encode_histories  # noqa: E402
from tests.reference import original_layout  # noqa: E402

H = config.HISTORY_LENGTH
VOCAB = [
    "платье красное",
    "красные кроссовки",
    "джинсы мужские",
    "чехол iphone 15",
    "куртка зимняя",
    "платье летнее",
    "сумка кожаная",
    "кроссовки nike",
    "шапка",
    "футболка белая",
    "юбка миди",
    "носки",
    "   пробелы  ",
    "ÉMOJI 👗 платье",
    "x" * 3000,
]


def _histories(n: int, seed: int) -> list[list[str]]:
    """Histories of 0..7 queries drawn Zipf-like from VOCAB (so queries repeat), oldest first."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(VOCAB) + 1)
    lengths = rng.integers(0, H + 1, size=n)
    return [list(rng.choice(VOCAB, size=k, p=weights / weights.sum())) for k in lengths]


def _examples(n: int, seed: int, *, max_len: int = H) -> pa.Table:
    hist = [h[-max_len:] if max_len else [] for h in _histories(n, seed)]
    start = datetime(2026, 9, 1)
    return pa.table(
        {
            "user_id": pa.array(np.arange(n) + 1000 * seed, pa.int64()),
            "order_ts": pa.array([start + timedelta(hours=i) for i in range(n)], pa.timestamp("us")),
            "nm_id": pa.array((np.arange(n) * 7) % 13, pa.int64()),
            "queries": pa.array(hist, pa.list_(pa.string())),
        },
        schema=examples_artifact.EXAMPLES,
    )


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory):
    folder = build_standin_encoder(VOCAB * 2, tmp_path_factory.mktemp("enc") / "encoder", vocab_size=500)
    return load_encoder(EncoderSpec(str(folder)), device="cpu")


@pytest.fixture()
def examples(tmp_path: Path) -> Path:
    tables = {
        "train.parquet": _examples(40, seed=1),
        "holdout.parquet": _examples(15, seed=2),
        "items.parquet": pa.table({"nm_id": [1, 2], "count": [5, 3]}),  # not a split
    }
    examples_artifact.write(tmp_path / "examples", tables, [])
    return tmp_path / "examples"


def _expected_slots(queries: list[str]) -> list[str | None]:
    """Right-aligned: the most recent query in the last slot, None = padding in front."""
    kept = queries[-H:]
    return [None] * (H - len(kept)) + kept


def test_writes_table_texts_and_right_aligned_indices(examples: Path, tmp_path: Path, encoder) -> None:
    out = tmp_path / "encoded"
    stats = encode_histories(examples, encoder, out, batch_size=4)

    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            artifact_folder.COMPLETE_MARKER,
            encoded.TABLE_FILE,
            encoded.TEXTS_FILE,
            encoded.INFO_FILE,
            "train.parquet",
            "train_hist.npy",
            "holdout.parquet",
            "holdout_hist.npy",
        ]
    )
    table = np.load(out / encoded.TABLE_FILE)
    texts = pq.read_table(out / encoded.TEXTS_FILE).column("query_text").to_pylist()
    assert table.dtype == np.float32 and table.shape == (len(texts) + 1, 312)
    all_queries = [
        q
        for s in ("train", "holdout")
        for h in pq.read_table(examples / f"{s}.parquet")["queries"].to_pylist()
        for q in h
    ]
    assert sorted(texts) == sorted(set(all_queries))  # each distinct text once, over both splits
    assert stats.queries_total == len(all_queries) and stats.queries_distinct == len(texts)
    assert np.allclose(table[0], encode_texts(encoder, [config.PAD_QUERY])[0], atol=1e-6)
    assert np.allclose(table[1:], encode_texts(encoder, texts), atol=1e-5)  # row i+1 is texts[i]

    lookup = [None, *texts]
    for split in ("train", "holdout"):
        source = pq.read_table(examples / f"{split}.parquet")
        hist = np.load(out / f"{split}_hist.npy")
        assert hist.dtype == np.int32 and hist.shape == (source.num_rows, H)
        decoded = [[lookup[i] for i in row] for row in hist.tolist()]
        assert decoded == [_expected_slots(q) for q in source["queries"].to_pylist()]
        rows = pq.read_table(out / f"{split}.parquet")
        assert rows.equals(source.drop_columns(["queries"]))

    info = json.loads((out / encoded.INFO_FILE).read_text())
    assert info["encoder"] == encoder.spec.name_or_path and info["pooling"] == "mean"
    assert info["dim"] == 312 and info["max_length"] == 64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".encoded")]  # no temp folder left


def test_original_layout_equals_encoding_every_slot(examples: Path, tmp_path: Path, encoder) -> None:
    out = tmp_path / "encoded"
    encode_histories(examples, encoder, out, batch_size=8)
    table = np.load(out / encoded.TABLE_FILE)
    source = pq.read_table(examples / "holdout.parquet")["queries"].to_pylist()
    features = original_layout(table, np.load(out / "holdout_hist.npy"))

    # The reference: every slot through the encoder, [PAD] for the missing ones, 5 encodings side by side.
    slots = [q if q is not None else config.PAD_QUERY for h in source for q in _expected_slots(h)]
    direct = encode_texts(encoder, slots, batch_size=7).reshape(len(source), H * 312)
    assert features.shape == (len(source), H * 312) and features.dtype == np.float32
    assert np.allclose(features, direct, atol=1e-5)
    assert any(len(h) < H for h in source)  # padding is exercised


def test_inference_histories_longer_histories_and_null_entries(tmp_path: Path, encoder) -> None:
    folder = tmp_path / "histories"
    queries = [["шапка", None, "носки"], None, [], ["a", "b", "c", "d", "e", "f", "g"], ["юбка миди"]]
    table = pa.table(
        {
            "user_id": pa.array([1, 2, 3, 4, 5], pa.int64()),
            "queries": pa.array(queries, pa.list_(pa.string())),
        }
    )
    examples_artifact.write(folder, {"histories.parquet": table}, [])
    out = tmp_path / "out"
    out.mkdir()  # KFP hands an existing, empty artifact folder
    stats = encode_histories(folder, EncoderSpec(str(encoder.local_dir)), out, device="cpu")

    texts = pq.read_table(out / encoded.TEXTS_FILE).column("query_text").to_pylist()
    lookup = [None, *texts]
    hist = np.load(out / "histories_hist.npy").tolist()
    assert [[lookup[i] for i in row] for row in hist] == [
        [None, None, None, "шапка", "носки"],  # nulls inside a history are dropped
        [None] * 5,  # a null history is empty
        [None] * 5,
        ["c", "d", "e", "f", "g"],  # longer than HISTORY_LENGTH: the most recent kept
        [None, None, None, None, "юбка миди"],
    ]
    assert "a" not in texts and "b" not in texts  # cut slots are not encoded
    assert stats.rows == {"histories": 5} and stats.queries_total == 8 and stats.queries_distinct == 8


def test_stats_metadata(examples: Path, tmp_path: Path, encoder) -> None:
    stats = encode_histories(examples, encoder, tmp_path / "encoded", splits=("train",))
    assert isinstance(stats, EncodeStats)
    assert not (tmp_path / "encoded" / "holdout_hist.npy").exists()
    meta = stats.as_metadata()
    assert meta["rows_train"] == 40 and meta["dim"] == 312 and meta["pooling"] == "mean"
    assert meta["queries_total"] > meta["queries_distinct"] > 0
    assert meta["queries_per_s"] > 0 and meta["tokens"] > meta["queries_distinct"]
    assert all(isinstance(v, str | int | float) for v in meta.values())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: pq.write_table(pa.table({"user_id": [1]}), d / "train.parquet"), "no 'queries' column"),
        (
            lambda d: pq.write_table(pa.table({"queries": ["a b"]}), d / "train.parquet"),
            "must be list<string>",
        ),
        (lambda d: (d / "train.parquet").write_text("not parquet"), "cannot read"),
        (lambda d: (d / "items.parquet").write_text(""), "holds none of"),
    ],
)
def test_bad_input_fails_with_one_line_and_writes_nothing(
    tmp_path: Path, encoder, make, message: str
) -> None:
    folder = tmp_path / "in"
    with artifact_folder.publishing(folder, "examples"):
        make(folder)
    with pytest.raises(SearchrecError, match=message) as error:
        encode_histories(folder, encoder, tmp_path / "out")
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_missing_split_input_folder_and_busy_output(examples: Path, tmp_path: Path, encoder) -> None:
    with pytest.raises(SearchrecError, match="has no histories.parquet"):
        encode_histories(examples, encoder, tmp_path / "out", splits=("histories",))
    with pytest.raises(SearchrecError, match="does not exist"):
        encode_histories(tmp_path / "nowhere", encoder, tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(SearchrecError, match="holds files searchrec did not write"):
        encode_histories(examples, encoder, busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
