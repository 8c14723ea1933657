"""Benchmark: encoding each distinct query once (the encode stage) vs every history slot (the reference).

Data: the demo generator's query log (`demo_data.generate_tables("demo")`: phrasings, typos, word
order, Zipf-repeated) gives the distinct texts; the most frequent ``SEARCHREC_BENCH_DISTINCT``
(default 10,000) of them are drawn Zipf (s = 1, by frequency rank) into ``SEARCHREC_BENCH_ROWS``
(default 20,000) histories of 1..5 queries, i.e. 100,000 history slots with [PAD] filling.
Encoder: the demo stand-in, a rubert-tiny2-shaped BERT (3 layers, hidden 312, 12 heads), on this
machine's device (CUDA with fp16 autocast when present, else CPU).

Measured in one run:
- unique (the stage): ``encode_histories`` end to end over all rows (read, dictionary-encode, encode
  each distinct text once in length-sorted batches, write table + indices), and its encode part;
- naive (the reference): every slot, [PAD] included, in batches of rows in their own order. Timed on
  a sample of ``SEARCHREC_BENCH_NAIVE_SLOTS`` slots (default 5,000: consecutive rows) and
  extrapolated linearly to all slots, because the full run takes minutes on 2 CPU cores;
- every slot, length-sorted: the same sample, to split the gain between dedup and sorting.
Results: tests/benchmarks/results/encode.md.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import platform  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pytest  # noqa: E402

from searchrec import config  # noqa: E402
from searchrec.artifacts import encoded as encoded_artifact  # noqa: E402
from searchrec.artifacts import examples  # noqa: E402
from searchrec.encoder import EncoderSpec, EncodeTiming, build_standin_encoder, encode_texts, load_encoder  # noqa: E402
from searchrec.stages.encode import encode_histories  # noqa: E402
from tests.reference import original_layout  # noqa: E402

pytestmark = pytest.mark.benchmark

N_DISTINCT = int(os.environ.get("SEARCHREC_BENCH_DISTINCT", "10000"))
N_ROWS = int(os.environ.get("SEARCHREC_BENCH_ROWS", "20000"))
NAIVE_SLOTS = int(os.environ.get("SEARCHREC_BENCH_NAIVE_SLOTS", "5000"))
BATCH = 512
H = config.HISTORY_LENGTH
RESULTS = Path(__file__).parent / "results" / "encode.md"


def query_log(seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """(all distinct demo texts, N_ROWS histories drawn Zipf from the N_DISTINCT most frequent)."""
    from searchrec import demo_data

    texts = demo_data.generate_tables("demo", seed=seed).search_queries.column("query_text")
    texts = texts.filter(pc.invert(pc.is_null(texts)))
    value_counts = pc.value_counts(texts)
    counts = pd.DataFrame({"values": value_counts.field("values"), "counts": value_counts.field("counts")})
    counts = counts[counts["values"].str.strip() != ""]
    ranked = counts.sort_values(["counts", "values"], ascending=[False, True])["values"].tolist()
    vocab = np.array(ranked[:N_DISTINCT], dtype=object)
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(vocab) + 1)
    lengths = rng.choice([1, 2, 3, 4, 5], size=N_ROWS, p=[0.1, 0.1, 0.1, 0.1, 0.6])
    draws = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p / p.sum())]
    bounds = np.cumsum(lengths)[:-1]
    return ranked, [list(h) for h in np.split(draws, bounds)]


def naive_slots(histories: list[list[str]]) -> list[str]:
    """The reference's encoder input: 5 slots per row, left-padded with [PAD], rows in order."""
    return [s for h in histories for s in [config.PAD_QUERY] * (H - len(h)) + h]


def test_unique_query_encoding_vs_every_slot(tmp_path: Path) -> None:
    started = time.perf_counter()
    all_texts, histories = query_log()
    standin = build_standin_encoder(all_texts, tmp_path / "encoder", vocab_size=8000, seed=0)
    encoder = load_encoder(EncoderSpec(str(standin)))
    setup_s = time.perf_counter() - started

    examples_dir = tmp_path / "examples"
    n = len(histories)
    train = pa.table(
        {
            "user_id": pa.array(np.arange(n), pa.int64()),
            "order_ts": pa.array(np.full(n, 1_790_000_000_000_000), pa.timestamp("us")),
            "nm_id": pa.array(np.arange(n) % 997, pa.int64()),
            "queries": pa.array(histories, pa.list_(pa.string())),
        },
        schema=examples.EXAMPLES,
    )
    examples.write(examples_dir, {"train.parquet": train}, [])
    encode_texts(encoder, ["прогрев"] * 64, BATCH, progress=False)  # warm-up (allocator, threads)

    # unique: the stage, end to end
    t0 = time.perf_counter()
    stats = encode_histories(examples_dir, encoder, tmp_path / "encoded", batch_size=BATCH, progress=False)
    unique_s = time.perf_counter() - t0
    table = np.load(tmp_path / "encoded" / encoded_artifact.TABLE_FILE)
    hist = np.load(tmp_path / "encoded" / encoded_artifact.hist_file("train"))

    # naive: every slot on a sample of consecutive rows, extrapolated to all slots
    slots = naive_slots(histories)
    sample_rows = max(1, NAIVE_SLOTS // H)
    start_row = (n - sample_rows) // 2
    sample = naive_slots(histories[start_row : start_row + sample_rows])
    naive_timing = EncodeTiming()
    t0 = time.perf_counter()
    naive = encode_texts(encoder, sample, BATCH, sort_by_length=False, progress=False, timing=naive_timing)
    naive_sample_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    encode_texts(encoder, sample, BATCH, sort_by_length=True, progress=False)
    sorted_sample_s = time.perf_counter() - t0
    scale = len(slots) / len(sample)
    naive_s, sorted_s = naive_sample_s * scale, sorted_sample_s * scale

    # same features as the reference on the sample rows
    reference = original_layout(table, hist[start_row : start_row + sample_rows])
    assert np.allclose(reference, naive.reshape(sample_rows, H * table.shape[1]), atol=1e-4)

    dim = table.shape[1]
    reference_bytes = len(slots) * dim * 4
    stage_bytes = table.nbytes + hist.nbytes
    naive_tokens = round(naive_timing.tokens * scale)
    rows = [
        ("every slot, rows in order (reference)", len(slots), naive_tokens, naive_s, f"extrapolated x{scale:.1f} from {len(sample):,} slots"),
        ("every slot, length-sorted", len(slots), naive_tokens, sorted_s, f"extrapolated x{scale:.1f} from the same slots"),
        ("distinct queries once (encode stage, end to end)", stats.queries_distinct + 1, stats.tokens, unique_s, "measured, all rows"),
        ("  of which tokenise + model", stats.queries_distinct + 1, stats.tokens, stats.encode_seconds, "measured"),
    ]  # fmt: skip
    lines = [
        "# encode: distinct queries once vs every history slot",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPU cores, "
        f"device {encoder.device}, torch threads {__import__('torch').get_num_threads()}; "
        f"encoder: demo stand-in, rubert-tiny2-shaped BERT (3 layers, hidden {dim}, 12 heads), "
        f"{encoder.pooling} pooling, batch {BATCH}, max_length {encoder.spec.max_length}.",
        "",
        f"Data: {n:,} histories ({len(slots):,} slots of {H}, {stats.queries_total:,} queries + "
        f"{len(slots) - stats.queries_total:,} [PAD]) drawn Zipf (s=1) from the {N_DISTINCT:,} most frequent "
        f"texts of the demo generator's query log; {stats.queries_distinct:,} distinct texts occur "
        f"({len(slots) / (stats.queries_distinct + 1):.1f} slots per encoded text).",
        "",
        "| way | texts encoded | tokens | seconds | texts/s | tokens/s | history slots/s | vs reference | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, encoded, tokens, seconds, note in rows:
        lines.append(
            f"| {name} | {encoded:,} | {tokens:,} | {seconds:.1f} | {encoded / seconds:,.0f} | {tokens / seconds:,.0f} | "
            f"{len(slots) / seconds:,.0f} | {naive_s / seconds:.1f}x | {note} |"
        )
    lines += [
        "",
        f"Stored features: reference {reference_bytes / 1e6:.1f} MB float32 [{len(slots) // H:,} x {H * dim}] vs "
        f"table + indices {stage_bytes / 1e6:.1f} MB ({reference_bytes / stage_bytes:.1f}x smaller). "
        f"Distinct texts are longer on average than slots ([PAD] and the short head queries repeat most), "
        f"so texts/s is lower for them; tokens/s is the engine's rate. Setup (demo log, stand-in build): {setup_s:.0f} s.",
        "",
        "The naive rows are timed on a sample of consecutive rows and scaled linearly by slot count "
        "(same texts per slot distribution); both ways share the machine's other load, which was not "
        "controlled (a shared 2-core development box).",
        "",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    assert naive_s / unique_s > 2.0
