"""`searchrec` command line: demo data, local runs, compilation, submission.

Every command ends bad input with one line naming the problem and exit code 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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

# What `demo` and `run --pipeline demo` fill in for options not given. The training and recommend
# pipelines get none of them: their warehouse, snapshots and window are named, or the run is refused.
DEMO_RUN_DEFAULTS = {
    "warehouse_uri": config.DEMO_WAREHOUSE,
    "embeddings_uri": config.DEMO_EMBEDDINGS,
    "encoder": config.DEMO_ENCODER_DIR,
    "train_start": config.DEMO_TRAIN_START,
    "train_end": config.DEMO_TRAIN_END,
    "holdout_start": config.DEMO_HOLDOUT_START,
    "recommend_start": config.DEMO_RECOMMEND_START,
    "recommend_end": config.DEMO_RECOMMEND_END,
    "min_item_count": config.DEMO_MIN_ITEM_COUNT,
    "num_shards": config.DEMO_NUM_SHARDS,
}
RUN_DEFAULTS = {  # the training and recommend pipelines: production values
    "encoder": config.PRODUCTION_ENCODER_ID,
    "holdout_start": "",
    "min_item_count": config.MIN_ITEM_COUNT,
    "num_shards": config.NUM_SHARDS,
}
RUN_REQUIRED = {
    "training": ("warehouse_uri", "embeddings_uri", "train_start", "train_end"),
    "recommend": ("warehouse_uri", "embeddings_uri", "recommend_start", "recommend_end"),
}


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


def _print_run(run) -> None:
    print(f"local run: {run.run_dir}")
    print(f"runner log: {run.run_dir / 'runner.log'}")
    if run.recommendations is not None:
        print(f"recommendations: {run.recommendations}")
        copied = run.metadata(run.final_task, "recommendations").get("copied_to")
        if copied:
            print(f"published to: {copied} (LATEST.json of the output root names it)")
    train_metrics = run.metrics.get("train")
    if train_metrics:
        print(f"metrics (train task Metrics artifact): {run.artifact_path('train', 'metrics')}")
        report = run.artifact_path("train", "report")
        browsable = run.run_dir / "report.html"  # the artifact has no extension; a browser needs one
        shutil.copyfile(report, browsable)
        print(f"HTML artifact of the train task: {report}")
        print(f"report: {browsable}")
        _print_headline(train_metrics)
    decision = run.metadata("promote", "decision")
    if decision:
        status = "promoted (now CURRENT)" if decision.get("promoted") else "published, NOT promoted"
        print(f"model {decision.get('registry_uri')}: {status}: {decision.get('reason')}")


def _print_headline(train_metrics: dict[str, float]) -> None:
    """Recall@200 of model, popularity and ceiling. On a catalogue of at most 200 items every item is
    recommended to everyone, so the model can pass the generator's ceiling: the line says so instead."""
    items = int(train_metrics.get("catalogue_items", config.TOP_K + 1))
    for label, key in HEADLINE_METRICS:
        if key not in train_metrics:
            continue
        if label == "ceiling" and items <= config.TOP_K:
            print(
                f"Recall@200 {label}: not comparable: the catalogue holds only {items} items (at most 200), "
                "so every item is recommended to everyone"
            )
        else:
            print(f"Recall@200 {label}: {train_metrics[key]:.4f}")


def cmd_run(args: argparse.Namespace) -> int:
    from searchrec.localrun import resume_local, run_local
    from searchrec.runcheck import check_run
    from searchrec.warmstart import prestarted

    # The warm task processes import torch & co. while the run is checked and its pipeline built; a run
    # refused by its checks stops them before anything else starts.
    with prestarted():
        if args.resume:
            run = resume_local(Path(args.resume), verbose=args.verbose)
        else:
            arguments = _run_arguments(args)
            check_run(args.pipeline, arguments, Path(args.runs_dir))
            run = run_local(
                args.pipeline, arguments, Path(args.runs_dir), cache=args.cache, verbose=args.verbose
            )
    _print_run(run)
    _say_kept()
    return 0


def _say_kept() -> None:
    from searchrec import warmstart

    keep_s = warmstart.keep_seconds()
    if warmstart.enabled() and keep_s > 0:
        print(
            f"warm task processes stay {keep_s / 60:g} min after their last task, so the next run skips "
            f"their imports (searchrec warm --stop ends them; {config.WARM_KEEP_ENV}=0 keeps none)"
        )


def _add_warm_command(command) -> None:
    p = command("warm", "stop the warm task processes that local runs keep for the next run")
    p.add_argument("--stop", action="store_true", required=True, help="stop them now")
    p.set_defaults(func=cmd_warm)


def cmd_warm(args: argparse.Namespace) -> int:
    from searchrec.warmstart import stop_kept

    stopped = stop_kept()
    for family, pid in stopped:
        print(f"stopped the warm {family} task process (pid {pid})")
    if not stopped:
        print("no warm task process was running")
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


def _same_window_names(args: argparse.Namespace) -> None:
    """--start-date/--end-date (submit's names) stand for the pipeline's own window."""
    prefix = "recommend" if args.pipeline == "recommend" else "train"
    for side in ("start", "end"):
        value = getattr(args, f"{side}_date", None)
        if value:
            setattr(args, f"{prefix}_{side}", value)


def fill_run_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """The options not given: the demo's for the demo pipeline, production values (or a refusal naming
    the missing option) for training and recommend. Ground truth only where named (or, for the demo on
    its own warehouse, the generator's)."""
    _same_window_names(args)
    demo = args.pipeline == "demo"
    on_demo_warehouse = demo and args.warehouse_uri is None
    for name, value in (DEMO_RUN_DEFAULTS if demo else RUN_DEFAULTS).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    missing = [n for n in RUN_REQUIRED.get(args.pipeline, ()) if getattr(args, n, None) in (None, "")]
    if missing:
        names = ", ".join("--" + n.replace("_", "-") for n in missing)
        raise SearchrecError(
            f"run --pipeline {args.pipeline} needs {names} (the demo's defaults apply only to --pipeline demo)"
        )
    if args.ground_truth is None:
        args.ground_truth = DEFAULT_GROUND_TRUTH if on_demo_warehouse else ""
        if args.ground_truth and not Path(args.ground_truth).is_dir():
            args.ground_truth = ""
    return args


def _run_arguments(args: argparse.Namespace) -> dict:
    fill_run_defaults(args)
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
    if args.pipeline != "recommend" and args.ground_truth:
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


def cmd_runs(args: argparse.Namespace) -> int:
    from searchrec.runs import format_runs, json_rows, kfp_runs, local_runs, vertex_runs

    if args.host and args.vertex_project:
        raise SearchrecError("give either a Kubeflow Pipelines host or a Vertex AI project, not both")
    if args.vertex_project:
        rows = vertex_runs(args.vertex_project, args.vertex_location, args.pipeline, args.limit)
    elif args.host:
        rows = kfp_runs(args.host, args.namespace, args.limit)
    else:
        rows = local_runs(Path(args.runs_dir))
    print(json_rows(rows) if args.json else format_runs(rows))
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from searchrec.runs import lineage

    print("\n".join(lineage(args.path)))
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from searchrec.stages.backtest import backtest

    result = backtest(Path(args.recommendations), _abs_uri(args.warehouse_uri), args.start_date, args.days)
    print(json.dumps({"start_date": result.start_date, "end_date": result.end_date, **result.as_metrics()}))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    """YAML per platform: <out>/kfp/<pipeline>.yaml and/or <out>/vertex/<pipeline>.yaml."""
    import os

    from searchrec.submit import CHECK_PIPELINE_NAMES, PIPELINE_NAMES, compile_platforms

    chosen = args.platform or os.environ.get(config.PLATFORM_ENV) or "all"
    platforms = config.PLATFORM_NAMES if chosen == "all" else (config.platform_name(chosen),)
    names = (*PIPELINE_NAMES, *CHECK_PIPELINE_NAMES)
    for path in compile_platforms(Path(args.out), platforms, tag=config.IMAGE_TAG, pipelines=names):
        print(path)
    return 0


def cmd_encoder_publish(args: argparse.Namespace) -> int:
    from searchrec.encoder import MANIFEST_FILE, publish_encoder

    manifest = publish_encoder(args.src, args.dest, pooling=args.pooling or None)
    size = sum(f["bytes"] for f in manifest["files"].values())
    print(
        f"published {args.src} to {args.dest}: {len(manifest['files'])} files, {size / 1e6:.1f} MB, {MANIFEST_FILE}"
    )
    print(f"use it as: --param encoder={args.dest}")
    return 0


def cmd_encoder_verify(args: argparse.Namespace) -> int:
    from searchrec.encoder import MANIFEST_FILE, check_published

    manifest = check_published(args.path)
    print(
        f"{args.path}: {len(manifest['files'])} files match {MANIFEST_FILE} (source {manifest.get('source')})"
    )
    return 0


def _add_encoder_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encoder", help="publish a sentence encoder for the cluster, or verify a published one"
    )
    commands = p.add_subparsers(dest="encoder_command", required=True)
    q = commands.add_parser(
        "publish", help="save_pretrained layout + checksum manifest of a cached HF id or a folder, to DEST"
    )
    q.add_argument("src", help="Hugging Face id in the local cache (HF_HOME), or a folder")
    q.add_argument("dest", help="folder, s3://bucket/prefix or gs://bucket/prefix")
    q.add_argument(
        "--pooling", choices=["cls", "mean"], default=None, help="default: the source folder's, else cls"
    )
    q.set_defaults(func=cmd_encoder_publish)
    q = commands.add_parser("verify", help="check a published folder's files against its manifest")
    q.add_argument("path", help="folder, s3:// or gs://")
    q.set_defaults(func=cmd_encoder_verify)


def _preflight_arguments(args: argparse.Namespace) -> dict:
    from searchrec.dates import parse_date

    parse_date(args.date, "--date")
    arguments = {
        "date": args.date,
        "snapshot_max_days": args.snapshot_max_days,
        "allow_no_gpu": args.allow_no_gpu,
        # required on a cluster; locally the demo's stand-in encoder is not a published folder
        "require_encoder_manifest": (
            not args.local if args.require_encoder_manifest is None else args.require_encoder_manifest
        ),
    }
    for name in ("warehouse_uri", "embeddings_uri", "encoder", "warehouse_secret"):
        value = getattr(args, name)
        if value:
            arguments[name] = _abs_uri(value) if args.local and name != "warehouse_secret" else value
    return arguments


def cmd_preflight(args: argparse.Namespace) -> int:
    """The preflight pipeline: locally (kfp.local) with one line per check, or submitted to a cluster."""
    if not args.local:
        return _submit_preflight(args)
    from searchrec.localrun import run_local
    from searchrec.preflight import parse_report

    defaults = {"warehouse_uri": config.DEMO_WAREHOUSE, "embeddings_uri": config.DEMO_EMBEDDINGS}
    defaults["encoder"] = config.DEMO_ENCODER_DIR
    for name, value in defaults.items():
        setattr(args, name, getattr(args, name) or value)
    run = run_local("preflight", _preflight_arguments(args), Path(args.runs_dir))
    report = run.artifact_path("preflight-report", "report")
    for stage, check, result, detail in parse_report(report.read_text(encoding="utf-8")):
        print(f"{result} {stage} {check}: {detail}")
    print(f"preflight report (Markdown artifact): {report}")
    return 0


def _submit_preflight(args: argparse.Namespace) -> int:
    from searchrec.submit import RunNotSucceeded, parse_params, submit

    params = {k: v for k, v in _preflight_arguments(args).items() if k != "date"}
    params.update(parse_params(args.param))
    try:
        run_id = _submit_preflight_run(args, params, submit)
    except RunNotSucceeded as error:
        print(f"searchrec: {error}", file=sys.stderr)
        return error.exit_code
    print(run_id)
    return 0


def _submit_preflight_run(args: argparse.Namespace, params: dict, submit) -> str:
    from searchrec.submit import vertex_network_from_args

    return submit(
        "preflight",
        start_date=args.date,
        end_date=args.date,
        params=params,
        host=args.host or None,
        namespace=args.namespace or None,
        vertex_project=None if args.host else (args.vertex_project or None),
        vertex_location=args.vertex_location or None,
        pipeline_root=args.pipeline_root or None,
        service_account=args.service_account or None,
        tag=args.tag,
        wait=args.wait,
        timeout=args.timeout,
        vertex_network=vertex_network_from_args(args),
    )


def _add_preflight_command(sub: argparse._SubParsersAction) -> None:
    import datetime as dt
    import os

    p = sub.add_parser("preflight", help="check every stage image on a cluster (or locally with --local)")
    p.add_argument("--local", action="store_true", help="run with kfp.local here (default: the demo data)")
    p.add_argument("--date", default=dt.date.today().isoformat(), help="embeddings partition near this date")
    p.add_argument("--warehouse-uri", dest="warehouse_uri", default="")
    p.add_argument("--warehouse-secret", dest="warehouse_secret", default="", help="Secret Manager version")
    p.add_argument("--embeddings-uri", dest="embeddings_uri", default="")
    p.add_argument("--encoder", default="", help="published encoder folder (searchrec encoder publish)")
    p.add_argument("--snapshot-max-days", type=int, default=config.SNAPSHOT_MAX_DAYS)
    p.add_argument("--allow-no-gpu", action="store_true", help="GPU checks pass without a GPU (local runs)")
    p.add_argument(
        "--require-encoder-manifest",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: required on a cluster, not locally (the demo's stand-in is not published)",
    )
    p.add_argument("--runs-dir", default="runs", help="kfp.local pipeline roots go here (--local)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument(
        "--host", default=os.environ.get(config.HOST_ENV), help=f"KFP endpoint (${config.HOST_ENV})"
    )
    p.add_argument("--namespace", default=os.environ.get(config.NAMESPACE_ENV))
    p.add_argument("--vertex-project", default=os.environ.get(config.VERTEX_PROJECT_ENV))
    p.add_argument("--vertex-location", default=os.environ.get(config.VERTEX_LOCATION_ENV))
    p.add_argument("--pipeline-root", default=os.environ.get(config.PIPELINE_ROOT_ENV))
    p.add_argument("--service-account", default=os.environ.get(config.SERVICE_ACCOUNT_ENV))
    p.add_argument("--tag", default=None, help="image tag (default: $SEARCHREC_IMAGE_TAG or the git commit)")
    p.add_argument("--wait", action="store_true", help="wait for the run; exit code from its final state")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (exit 124 after)")
    try:
        from searchrec.submit import add_vertex_network_options
    except ImportError:  # the submit extra is not installed in this image
        pass
    else:
        add_vertex_network_options(p)
    p.set_defaults(func=cmd_preflight)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Options of `run` and `demo`; every one says its default (HELP_FORMAT)."""
    opt = p.add_argument
    opt(
        "--warehouse-uri",
        default=None,
        help=f"duckdb:///file or postgresql://host/db; None: required, demo: {config.DEMO_WAREHOUSE}",
    )
    opt(
        "--embeddings-uri",
        default=None,
        help=f"folder, s3:// or gs:// with dt=... partitions; None: required, demo: {config.DEMO_EMBEDDINGS}",
    )
    opt(
        "--encoder",
        default=None,
        help=f"HF id (from the local cache), folder, s3:// or gs://; None: {config.PRODUCTION_ENCODER_ID}, "
        f"demo: {config.DEMO_ENCODER_DIR}",
    )
    opt("--pooling", default="", choices=["", "cls", "mean"], help="empty: the encoder folder decides")
    _add_window_options(p)
    _add_training_options(p)
    _add_serving_options(p)
    opt("--runs-dir", default="runs", help="kfp.local run folders (and their cache) go here")
    opt(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="run an interrupted or failed local run again with its own arguments: finished tasks are reused "
        "and train continues from its last checkpoint (every other option is ignored)",
    )
    opt(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="stream the runner's whole log (always written to runner.log in the run folder) (default: off)",
    )
    add_cache_options(p)


def _add_window_options(p: argparse.ArgumentParser) -> None:
    """Date windows: submit's --start-date/--end-date, and the demo's two windows."""
    opt = p.add_argument
    opt(
        "--start-date",
        default=None,
        help="first day of the pipeline's window, as `submit` names it; None: --train-start (training, "
        "demo) or --recommend-start (recommend)",
    )
    opt("--end-date", default=None, help="last day of that window; None: --train-end or --recommend-end")
    demo = "None: required (training), demo: "
    opt(
        "--train-start",
        default=None,
        help=f"first day of the training window; {demo}{config.DEMO_TRAIN_START}",
    )
    opt("--train-end", default=None, help=f"last day of the training window; {demo}{config.DEMO_TRAIN_END}")
    opt(
        "--holdout-start",
        default=None,
        help=f"purchases from this day on are the holdout; None: the pipeline's, demo: {config.DEMO_HOLDOUT_START}",
    )
    demo = "None: required (recommend), demo: "
    opt(
        "--recommend-start",
        default=None,
        help=f"first day of the recommendation window; {demo}{config.DEMO_RECOMMEND_START}",
    )
    opt(
        "--recommend-end",
        default=None,
        help=f"last day of the recommendation window; {demo}{config.DEMO_RECOMMEND_END}",
    )
    opt(
        "--min-item-count",
        type=int,
        default=None,
        help=f"training items: bought at least; None: {config.MIN_ITEM_COUNT}, demo: {config.DEMO_MIN_ITEM_COUNT}",
    )
    opt("--max-items", type=int, default=config.MAX_ITEMS, help="training items: at most this many")
    opt(
        "--snapshot-max-days",
        type=int,
        default=config.SNAPSHOT_MAX_DAYS,
        help="how far the nearest dt= snapshot may be from the window's end",
    )


def _add_training_options(p: argparse.ArgumentParser) -> None:
    """What shapes training."""
    opt = p.add_argument
    opt("--epochs", type=int, default=config.TRAIN_EPOCHS, help="training epochs")
    opt("--learning-rate", type=float, default=None, help="training learning rate (None: the pipeline's)")


def _add_serving_options(p: argparse.ArgumentParser) -> None:
    """Registry, serving and demo options."""
    opt = p.add_argument
    opt(
        "--num-shards",
        type=int,
        default=None,
        help=f"user shards for inference; None: {config.NUM_SHARDS}, demo: {config.DEMO_NUM_SHARDS}",
    )
    opt(
        "--model-uri",
        default="",
        help="recommend: a model folder or a registry root (its CURRENT model); empty: --models-uri",
    )
    opt(
        "--models-uri",
        default=config.LOCAL_MODELS_DIR,
        help="model registry root (folder, s3://, gs://): training publishes there, recommend reads its "
        "current model; empty: training does not publish",
    )
    opt(
        "--min-lift",
        type=float,
        default=config.PROMOTE_MIN_LIFT,
        help="gate: Recall@200 >= this x popularity",
    )
    opt(
        "--max-regression",
        type=float,
        default=config.PROMOTE_MAX_REGRESSION,
        help="gate: at most this much below the current model's Recall@200",
    )
    opt("--users-uri", default="", help="parquet/csv with a user_id column; empty: every user in the window")
    opt("--output-uri", default="", help="where to copy the recommendations; empty: nowhere")
    opt(
        "--ground-truth",
        default=None,
        help="a generator's ground truth folder for the ceiling metrics; None: none, except the demo on its "
        f"own warehouse ({DEFAULT_GROUND_TRUTH})",
    )


HELP_FORMAT = argparse.ArgumentDefaultsHelpFormatter


def _add_demo_data_command(command) -> None:
    p = command("demo-data", "generate the demo warehouse, embeddings and stand-in encoder")
    p.add_argument("--out", default=config.DEMO_DIR, help="folder to write")
    p.add_argument("--size", default="demo", help="tiny, demo or large")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--force", action="store_true", help="overwrite existing demo data")
    p.set_defaults(func=cmd_demo_data)


def _add_runs_commands(command) -> None:
    """`runs` and `lineage`: past runs and where an output came from."""
    p = command("runs", "list runs: local (kfp.local) runs, a Kubeflow Pipelines endpoint's, or Vertex AI's")
    p.add_argument("--runs-dir", default="runs", help="local runs folder")
    p.add_argument(
        "--host",
        default=os.environ.get("SEARCHREC_KFP_HOST"),
        help="Kubeflow Pipelines endpoint ($SEARCHREC_KFP_HOST): list its runs instead of local ones",
    )
    p.add_argument("--namespace", default=None, help="KFP namespace, multi-user clusters")
    p.add_argument(
        "--vertex-project",
        default=os.environ.get(config.VERTEX_PROJECT_ENV),
        help=f"Vertex AI project (${config.VERTEX_PROJECT_ENV}): list the pipeline jobs submitted from here",
    )
    p.add_argument(
        "--vertex-location",
        default=os.environ.get(config.VERTEX_LOCATION_ENV),
        help=f"Vertex AI region (${config.VERTEX_LOCATION_ENV}, else {config.VERTEX_LOCATION})",
    )
    p.add_argument(
        "--pipeline",
        choices=["training", "recommend", "demo"],
        default=None,
        help="Vertex AI: only this pipeline's jobs",
    )
    p.add_argument("--limit", type=int, default=20, help="at most this many KFP or Vertex AI runs")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=cmd_runs)

    p = command("lineage", "where a recommendations file or a model came from, back to the warehouse window")
    p.add_argument("path", help="a file or folder inside a local run, a model folder or a registry root")
    p.set_defaults(func=cmd_lineage)


def build_parser() -> argparse.ArgumentParser:
    from searchrec import __version__

    parser = argparse.ArgumentParser(prog="searchrec", description=__doc__, formatter_class=HELP_FORMAT)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging; for run: the whole log")
    parser.add_argument("--version", action="version", version=f"searchrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=HELP_FORMAT)

    _add_demo_data_command(command)

    p = command("demo", "demo data if missing, then the demo pipeline locally")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)

    p = command("run", "run a pipeline locally (kfp.local) on any warehouse and window")
    p.add_argument("--pipeline", choices=["demo", "training", "recommend"], default="demo", help="which")
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    _add_warm_command(command)
    _add_runs_commands(command)

    p = command(
        "backtest", "served recommendations against the purchases of the following days, any warehouse"
    )
    p.add_argument(
        "--recommendations", required=True, help="an infer output folder (recommendations.parquet)"
    )
    p.add_argument("--warehouse-uri", required=True, help="duckdb:///file or postgresql://host/db")
    p.add_argument("--start-date", required=True, help="first day of the purchases, YYYY-MM-DD")
    p.add_argument(
        "--days", type=int, default=config.BACKTEST_DAYS, help="days of purchases after --start-date"
    )
    p.set_defaults(func=cmd_backtest)

    p = command("compile", "compile the pipelines to YAML, per platform")
    p.add_argument("--out", default="compiled", help="YAML goes to <out>/<platform>/<pipeline>.yaml")
    p.add_argument(
        "--platform",
        choices=[*config.PLATFORM_NAMES, "all"],
        default=None,
        help=f"kfp (PipelineSpec + PlatformSpec) or vertex (one document); default ${config.PLATFORM_ENV}, else all",
    )
    p.set_defaults(func=cmd_compile)

    _add_encoder_commands(sub)
    _add_preflight_command(sub)

    try:
        from searchrec.submit import register_cli
    except ImportError:  # the submit extra is not installed in this image
        pass
    else:
        register_cli(sub)
    for subparser in sub.choices.values():  # submit / schedule / images too: defaults in their help
        subparser.formatter_class = HELP_FORMAT
    return parser


def _refuse_passwords(args: argparse.Namespace) -> None:
    """Every command, before anything runs or is logged: no option may carry a password (one line naming
    the option, never the value)."""
    from searchrec.secrets import refuse_passwords

    options = {f"--{k.replace('_', '-')}": v for k, v in vars(args).items() if not callable(v)}
    refuse_passwords(options, what="option")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        _refuse_passwords(args)
        return args.func(args)
    except SearchrecError as error:
        print(f"searchrec: error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    except KeyboardInterrupt:
        print("searchrec: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # not the project's own: one line, the traceback in a file it names
        print(f"searchrec: error: {_unexpected(error)}", file=sys.stderr)
        return 1


def _unexpected(error: Exception) -> str:
    """`Type: first line (traceback in <file>)`; the traceback is kept for a bug report, not shown."""
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(error))
    with tempfile.NamedTemporaryFile("w", prefix="searchrec-error-", suffix=".txt", delete=False) as out:
        out.write(text)
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first} (traceback in {out.name})"


if __name__ == "__main__":
    sys.exit(main())
