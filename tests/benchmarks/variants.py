"""Benchmark helpers (not production code): train several parameter variants on the same inputs and
tabulate their holdout / validation metrics; build a demo-generator world's train inputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from searchrec import config
from searchrec.stages.train import TrainParams, train_two_tower

VARIANTS: dict[str, dict] = {
    "multi_margin/pad (original)": {"loss": "multi_margin", "padding": "pad", "sampled_negatives": 0},
    "cosine/pad": {"loss": "cosine", "padding": "pad", "sampled_negatives": 0},
    "softmax/pad": {"loss": "softmax", "padding": "pad", "logq_correction": False, "sampled_negatives": 0},
    "softmax+logQ/pad": {
        "loss": "softmax",
        "padding": "pad",
        "logq_correction": True,
        "sampled_negatives": 0,
    },
    "softmax/mask": {"loss": "softmax", "padding": "mask", "logq_correction": False, "sampled_negatives": 0},
    "softmax+logQ/mask": {
        "loss": "softmax",
        "padding": "mask",
        "logq_correction": True,
        "sampled_negatives": 0,
    },
    "softmax+logQ/mask + mixed negatives": {"loss": "softmax", "padding": "mask", "logq_correction": True},
    "multi_margin/mask": {"loss": "multi_margin", "padding": "mask", "sampled_negatives": 0},
}
COLUMNS = (
    "model_recall_at_10",
    "model_recall_at_50",
    "model_recall_at_200",
    "model_ndcg_at_200",
    "model_mrr",
)


def compare_variants(
    encoded_dir: Path,
    examples_dir: Path,
    embeddings_dir: Path,
    work_dir: Path,
    *,
    base: TrainParams | None = None,
    variants: dict[str, dict] | None = None,
    ground_truth_dir: Path | None = None,
) -> list[dict]:
    """Train each variant on the same data and seed; one row of metrics per variant."""
    base = base or TrainParams()
    out = []
    for i, (name, overrides) in enumerate((variants or VARIANTS).items()):
        result = train_two_tower(
            encoded_dir,
            examples_dir,
            embeddings_dir,
            Path(work_dir) / f"variant-{i}",
            params=replace(base, **overrides),
            ground_truth_dir=ground_truth_dir,
        )
        keep = ("model_", "popularity_", "ceiling_", "validation_", "best_epoch")
        out.append(
            {
                "variant": name,
                **{k: v for k, v in result.metrics.items() if k.startswith(keep)},
                "epochs": result.epochs,
                "final_loss": result.history[-1]["loss"],
                "seconds": round(result.seconds, 1),
            }
        )
    return out


def variants_markdown(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    head = " | ".join(c.removeprefix("model_") for c in columns)
    lines = [f"| variant | {head} | popularity recall@200 | seconds |", "|---" * (len(columns) + 3) + "|"]
    for r in rows:
        vals = " | ".join(f"{r.get(c, float('nan')):.4f}" for c in columns)
        pop = r.get("popularity_recall_at_200", float("nan"))
        lines.append(f"| {r['variant']} | {vals} | {pop:.4f} | {r['seconds']} |")
    return "\n".join(lines)


def build_world(
    root: Path, size: str, seed: int = 0, min_item_count: int = config.DEMO_MIN_ITEM_COUNT
) -> tuple[Path, Path, Path, Path]:
    """A demo-generator world run through extract, clean and encode with the stand-in encoder, as the demo
    pipeline would (library calls, no KFP): (encoded, examples, snapshot, ground_truth) folders."""
    from searchrec import demo_data
    from searchrec.encoder import EncoderSpec, build_standin_encoder
    from searchrec.stages.clean import clean_training_events
    from searchrec.stages.encode import encode_histories
    from searchrec.stages.extract import extract_training_events, fetch_snapshot

    root, data = Path(root), Path(root) / "data"
    if not (root / "encoded").is_dir():
        demo_data.generate(data, size=size, seed=seed, overwrite=True)
        build_standin_encoder(demo_data.query_texts(data), data / "encoder", seed=seed)
        warehouse = f"duckdb:///{(data / demo_data.WAREHOUSE_FILE).resolve()}"
        extract_training_events(warehouse, config.DEMO_TRAIN_START, config.DEMO_TRAIN_END, root / "events")
        fetch_snapshot(str(data / demo_data.EMBEDDINGS_DIR), config.DEMO_TRAIN_END, root / "snapshot")
        clean_training_events(
            root / "events",
            root / "snapshot",
            root / "examples",
            holdout_start=config.DEMO_HOLDOUT_START,
            min_item_count=min_item_count,
        )
        encode_histories(
            root / "examples", EncoderSpec(str(data / "encoder")), root / "encoded", progress=False
        )
    (root / "world.json").write_text(
        json.dumps({"size": size, "seed": seed, "min_item_count": min_item_count})
    )
    return root / "encoded", root / "examples", root / "snapshot", data / demo_data.GROUND_TRUTH_DIR


def update_results_section(results: Path, title: str, section: str, text: str) -> None:
    """Replace one named section (``<!-- section:NAME -->`` ... ``<!-- /section:NAME -->``) of a results
    file, keeping the others; a new file starts with ``title``. Prints the text as well."""
    import re

    results.parent.mkdir(parents=True, exist_ok=True)
    old = results.read_text() if results.exists() else f"# {title}\n"
    block = f"<!-- section:{section} -->\n{text.strip()}\n<!-- /section:{section} -->"
    pattern = re.compile(rf"<!-- section:{section} -->.*?<!-- /section:{section} -->", re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else f"{old.rstrip()}\n\n{block}\n"
    results.write_text(new)
    print("\n" + text)
