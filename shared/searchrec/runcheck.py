"""What `searchrec run` checks before anything starts, so that no bad parameter is found after minutes
of work: numbers in range, the runs folder, named files, the snapshot nearest each window, the model
(recommend), and the warehouse's answer to "does this window hold anything?" (cheap: the first row).

Each problem is one SearchrecError line naming the option. The stages check again at run time: a
pipeline submitted by other means meets the same rules, later.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from searchrec import storage, warehouse
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

# option -> (smallest allowed value, what it is); checked where the pipeline takes the argument
MINIMUMS = {
    "epochs": (1, "training epochs"),
    "num_shards": (1, "inference shards"),
    "min_item_count": (1, "purchases per training item"),
    "max_items": (1, "training items"),
    "snapshot_max_days": (0, "days between a window and its snapshot"),
    "cache_lag_days": (0, "days before a window counts as closed"),
}

# (SQL file, what it looks for, the option that names the window's start) per window argument pair
WINDOW_PROBES = {
    ("train_start_date", "train_end_date"): ("window_purchases", "purchases", "--train-start"),
    ("recommend_start_date", "recommend_end_date"): ("window_queries", "search queries", "--recommend-start"),
}


ENCODER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # what transformers' from_pretrained reads


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_numbers(arguments: dict) -> None:
    for name, (minimum, what) in MINIMUMS.items():
        value = arguments.get(name)
        if value is not None and int(value) < minimum:
            raise SearchrecError(f"{_option(name)} must be at least {minimum} ({what}), got {value}")
    rate = arguments.get("learning_rate")
    if rate is not None and not float(rate) > 0:
        raise SearchrecError(f"--learning-rate must be above 0, got {rate}")


def check_runs_dir(runs_dir: Path) -> None:
    runs_dir = Path(runs_dir)
    """A folder, or creatable: its nearest existing ancestor is a writable folder (nothing is made here)."""
    import os

    if runs_dir.exists() and not runs_dir.is_dir():
        raise SearchrecError(f"--runs-dir {runs_dir} is a file, not a folder")
    existing = next(p for p in (runs_dir.absolute(), *runs_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise SearchrecError(f"--runs-dir {runs_dir}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SearchrecError(f"--runs-dir {runs_dir}: {existing} is not writable")


def check_named_files(arguments: dict) -> None:
    """Local files and folders the user named exist (remote ones are the stages' to read)."""
    for name, option in (("users_uri", "--users-uri"), ("ground_truth_uri", "--ground-truth")):
        value = arguments.get(name)
        if value and not storage.is_remote(value) and not Path(value).exists():
            raise SearchrecError(f"{option} {value} does not exist")
    from searchrec.encoder import is_hub_id

    encoder = str(arguments.get("encoder") or "")
    if encoder and not storage.is_remote(encoder) and not is_hub_id(encoder):
        if not (Path(encoder) / "config.json").is_file():
            raise SearchrecError(f"--encoder {encoder} is not an encoder folder (no config.json in it)")
        if not any((Path(encoder) / name).is_file() for name in ENCODER_WEIGHTS):
            raise SearchrecError(f"--encoder {encoder} holds no weights ({' or '.join(ENCODER_WEIGHTS)})")


def window_arguments(pipeline: str, arguments: dict) -> dict[tuple[str, str], tuple[str, str]]:
    """{(start key, end key) of WINDOW_PROBES: (start, end)} of the windows this run reads."""
    if pipeline == "demo":
        return {keys: (arguments[keys[0]], arguments[keys[1]]) for keys in WINDOW_PROBES}
    keys = ("train_start_date", "train_end_date") if pipeline == "training" else tuple(WINDOW_PROBES)[1]
    return {keys: (arguments["start_date"], arguments["end_date"])}


def check_snapshots(arguments: dict, windows: dict) -> None:
    """A snapshot within --snapshot-max-days of each window's end (or the pinned partition exists). Unlike
    extract's ``locate_snapshot`` (one window), the folder is listed once for all the run's windows."""
    from searchrec.dates import parse_date
    from searchrec.stages.extract import list_snapshots, pick_snapshot, pinned_snapshot_date

    uri = str(arguments["embeddings_uri"])
    if pinned_snapshot_date(uri) is not None:
        if not storage.list_dir(uri):
            raise SearchrecError(f"--embeddings-uri {uri}: the pinned snapshot is empty or missing")
        return
    snapshots = list_snapshots(uri)
    max_days = int(arguments.get("snapshot_max_days", 0))
    for _, end in windows.values():
        pick_snapshot(snapshots, parse_date(end, "end date"), max_days, f"--embeddings-uri {uri}")


def check_model(model_uri: str) -> None:
    """A model folder or a registry root with a current model; a local one's config must load."""
    from searchrec import registry
    from searchrec.artifacts import model as model_artifact

    resolved = registry.resolve(model_uri)
    if not storage.is_remote(resolved.uri):
        model_artifact.read_config(Path(resolved.uri))


def check_windows(uri: str, windows: dict) -> None:
    """The warehouse answers, and each window holds at least one row of what its extract reads."""
    with warehouse.connection(uri, attempts=1) as conn:
        for keys, (start, end) in windows.items():
            query, what, option = WINDOW_PROBES[keys]
            if not warehouse.first_row(conn, uri, query, {"start_date": start, "end_date": end}):
                raise SearchrecError(
                    f"{option}: no {what} between {start} and {end} in warehouse {warehouse.display_uri(uri)}"
                )


def check_output_root(arguments: dict, runs_dir: Path) -> None:
    """The output root takes no foreign files and does not contain the runs folder (outputs.check_root)."""
    from searchrec.outputs import check_root

    if arguments.get("output_uri"):
        check_root(arguments["output_uri"], {str(Path(runs_dir).resolve()): "the runs folder"})


def check_run(pipeline: str, arguments: dict, runs_dir: Path) -> None:
    """Every check above, cheapest first."""
    started = time.perf_counter()
    check_numbers(arguments)
    check_runs_dir(runs_dir)
    check_output_root(arguments, runs_dir)
    check_named_files(arguments)
    windows = window_arguments(pipeline, arguments)
    check_snapshots(arguments, windows)
    if pipeline == "recommend":
        check_model(str(arguments["model_uri"]))
    check_windows(str(arguments["warehouse_uri"]), windows)
    log.info("run parameters checked in %.2f s", time.perf_counter() - started)
