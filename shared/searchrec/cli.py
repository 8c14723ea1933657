"""`searchrec` command line: demo data, local runs, compilation, submission.

Every command ends bad input with one line naming the problem and exit code 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from searchrec import config
from searchrec.cli_options import add_cache_options
from searchrec.errors import SearchrecError
from searchrec.runtime import setup_logging

log = logging.getLogger("searchrec.cli")

HEADLINE_METRICS = (
    ("model", "model_recall_at_200"),
    ("popularity", "popularity_recall_at_200"),
    ("ceiling", "ceiling_recall_at_200"),
)


DEFAULT_GROUND_TRUTH = f"{config.DEMO_DIR}/ground_truth"


def _abs_uri(uri: str) -> str:
    """Local paths (and duckdb:/// files) made absolute so that every task sees the same file."""
    if uri.startswith("duckdb:///"):
        return "duckdb:///" + str(Path(uri.removeprefix("duckdb:///")).resolve())
    if "://" in uri or not uri:
        return uri
    return str(Path(uri).resolve())


def cmd_demo_data(args: argparse.Namespace) -> int:
    from searchrec import demo_data
    from searchrec.encoder import build_standin_encoder

    out = Path(args.out)
    summary = demo_data.generate(out, size=args.size, seed=args.seed, overwrite=args.force)
    log.info("demo data: %s", summary)
    texts = demo_data.query_texts(out)
    build_standin_encoder(texts, out / "encoder", seed=args.seed)
    print(f"demo warehouse: duckdb:///{(out / 'warehouse.duckdb').resolve()}")
    print(f"embeddings:     {(out / 'embeddings').resolve()}")
    print(f"encoder:        {(out / 'encoder').resolve()} (stand-in for {config.PRODUCTION_ENCODER_ID})")
    return 0


def _print_run(run, pipeline: str) -> None:
    print(f"local run: {run.run_dir}")
    if run.recommendations is not None:
        print(f"recommendations: {run.recommendations}")
    train_metrics = run.metrics.get("train")
    if train_metrics:
        print(f"metrics (train task Metrics artifact): {run.artifact_path('train', 'metrics')}")
        report = run.artifact_path("train", "report")
        browsable = run.run_dir / "report.html"  # the artifact has no extension; a browser needs one
        shutil.copyfile(report, browsable)
        print(f"HTML artifact of the train task: {report}")
        print(f"report: {browsable}")
        for label, key in HEADLINE_METRICS:
            if key in train_metrics:
                print(f"Recall@200 {label}: {train_metrics[key]:.4f}")
    decision = run.metadata("promote", "decision")
    if decision:
        status = "promoted (now CURRENT)" if decision.get("promoted") else "published, NOT promoted"
        print(f"model {decision.get('registry_uri')}: {status}: {decision.get('reason')}")


def cmd_run(args: argparse.Namespace) -> int:
    from searchrec.localrun import run_local

    arguments = _run_arguments(args)
    run = run_local(args.pipeline, arguments, Path(args.runs_dir), cache=args.cache)
    _print_run(run, args.pipeline)
    return 0


def _check_dates(args: argparse.Namespace) -> None:
    """Parameters are validated before anything runs."""
    from searchrec.dates import check_window, parse_date

    if args.pipeline in ("demo", "training"):
        check_window(args.train_start, args.train_end, "--train-start", "--train-end")
        if args.holdout_start:
            parse_date(args.holdout_start, "--holdout-start")
    if args.pipeline in ("demo", "recommend"):
        check_window(args.recommend_start, args.recommend_end, "--recommend-start", "--recommend-end")


def _run_arguments(args: argparse.Namespace) -> dict:
    _check_dates(args)
    arguments: dict = {
        "warehouse_uri": _abs_uri(args.warehouse_uri),
        "embeddings_uri": _abs_uri(args.embeddings_uri),
        "encoder": _abs_uri(args.encoder) if Path(args.encoder).exists() else args.encoder,
        "pooling": args.pooling,
        "snapshot_max_days": args.snapshot_max_days,
        "cache_lag_days": args.cache_lag_days,
    }
    if args.pipeline == "demo":
        arguments.update(
            train_start_date=args.train_start,
            train_end_date=args.train_end,
            recommend_start_date=args.recommend_start,
            recommend_end_date=args.recommend_end,
            holdout_start=args.holdout_start,
            min_item_count=args.min_item_count,
            max_items=args.max_items,
            num_shards=args.num_shards,
            epochs=args.epochs,
        )
    elif args.pipeline == "training":
        arguments.update(
            start_date=args.train_start,
            end_date=args.train_end,
            holdout_start=args.holdout_start,
            min_item_count=args.min_item_count,
            max_items=args.max_items,
            epochs=args.epochs,
            models_uri=_abs_uri(args.models_uri),
            min_lift=args.min_lift,
            max_regression=args.max_regression,
        )
        if args.learning_rate is not None:
            arguments["learning_rate"] = args.learning_rate
    else:
        arguments.update(
            start_date=args.recommend_start,
            end_date=args.recommend_end,
            model_uri=_abs_uri(args.model_uri or args.models_uri),
            num_shards=args.num_shards,
        )
    default_truth = args.ground_truth == DEFAULT_GROUND_TRUTH and not Path(args.ground_truth).exists()
    if args.pipeline != "recommend" and args.ground_truth and not default_truth:
        arguments["ground_truth_uri"] = _abs_uri(args.ground_truth)
    if args.pipeline != "training":
        if args.users_uri:
            arguments["users_uri"] = _abs_uri(args.users_uri)
        if args.output_uri:
            arguments["output_uri"] = _abs_uri(args.output_uri)
    return arguments


def cmd_demo(args: argparse.Namespace) -> int:
    data = Path(config.DEMO_DIR)
    if not (data / "summary.json").is_file() or not (data / "encoder").is_dir():
        log.info("no demo data in %s yet: generating it", data)
        cmd_demo_data(argparse.Namespace(out=str(data), size="demo", seed=0, force=True))
    args.pipeline = "demo"
    return cmd_run(args)


def cmd_compile(args: argparse.Namespace) -> int:
    from pipelines import compile_all

    for path in compile_all(Path(args.out)):
        print(path)
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--warehouse-uri", default=config.DEMO_WAREHOUSE, help="duckdb:///file or postgresql://host/db"
    )
    p.add_argument(
        "--embeddings-uri", default=config.DEMO_EMBEDDINGS, help="folder, s3:// or gs:// with dt=..."
    )
    p.add_argument("--encoder", default=config.DEMO_ENCODER_DIR, help="HF id, local folder, s3:// or gs://")
    p.add_argument(
        "--pooling", default="", choices=["", "cls", "mean"], help="empty: the encoder folder decides"
    )
    p.add_argument("--train-start", default=config.DEMO_TRAIN_START)
    p.add_argument("--train-end", default=config.DEMO_TRAIN_END)
    p.add_argument("--holdout-start", default=config.DEMO_HOLDOUT_START)
    p.add_argument("--recommend-start", default=config.DEMO_RECOMMEND_START)
    p.add_argument("--recommend-end", default=config.DEMO_RECOMMEND_END)
    p.add_argument("--min-item-count", type=int, default=config.DEMO_MIN_ITEM_COUNT)
    p.add_argument("--max-items", type=int, default=config.MAX_ITEMS)
    p.add_argument(
        "--snapshot-max-days",
        type=int,
        default=config.SNAPSHOT_MAX_DAYS,
        help="how far the nearest dt= snapshot may be from the window's end",
    )
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--num-shards", type=int, default=2)
    p.add_argument(
        "--model-uri",
        default="",
        help="recommend: a model folder or a registry root (its CURRENT model); default: --models-uri",
    )
    p.add_argument(
        "--models-uri",
        default=config.LOCAL_MODELS_DIR,
        help="model registry root (folder, s3://, gs://): training publishes there, recommend reads "
        "its current model; empty: training does not publish (default: %(default)s)",
    )
    p.add_argument(
        "--min-lift",
        type=float,
        default=config.PROMOTE_MIN_LIFT,
        help="promotion gate: holdout Recall@200 >= this x popularity (default: %(default)s)",
    )
    p.add_argument(
        "--max-regression",
        type=float,
        default=config.PROMOTE_MAX_REGRESSION,
        help="promotion gate: at most this much below the current model's Recall@200 (default: %(default)s)",
    )
    p.add_argument(
        "--learning-rate", type=float, default=None, help="training learning rate (default: the pipeline's)"
    )
    p.add_argument("--users-uri", default="", help="parquet/csv with a user_id column")
    p.add_argument("--output-uri", default="", help="where to copy the recommendations")
    p.add_argument(
        "--ground-truth",
        default=DEFAULT_GROUND_TRUTH,
        help="demo ground truth for the ceiling metrics; the default is used only where it exists "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--runs-dir", default="runs", help="kfp.local pipeline roots go here (default: %(default)s)"
    )
    add_cache_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="searchrec", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="generate the demo warehouse, embeddings and stand-in encoder")
    p.add_argument("--out", default=config.DEMO_DIR)
    p.add_argument("--size", default="demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite existing demo data")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("demo", help="demo data if missing, then the demo pipeline locally")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run a pipeline locally (kfp.local) on any warehouse and window")
    p.add_argument("--pipeline", choices=["demo", "training", "recommend"], default="demo")
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compile", help="compile the pipelines to YAML")
    p.add_argument("--out", default="compiled")
    p.set_defaults(func=cmd_compile)

    try:
        from searchrec.submit import register_cli
    except ImportError:  # the submit extra is not installed in this image
        pass
    else:
        register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except SearchrecError as error:
        print(f"searchrec: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
