"""The trained model folder: ``config.json`` and the two towers as safetensors (loaded by
``searchrec.model.TwoTower.load``, which needs torch; this module does not), plus ``checkpoints/``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from searchrec.artifacts import folder

KIND = "model"
CONFIG_FILE = "config.json"
QUERY_TOWER_FILE = "query_tower.safetensors"
ITEM_TOWER_FILE = "item_tower.safetensors"
POPULARITY_FILE = "popularity.safetensors"  # only with a popularity prior: nm_id, log_count
CHECKPOINTS_DIR = "checkpoints"
FILES = (CONFIG_FILE, QUERY_TOWER_FILE, ITEM_TOWER_FILE)
OPTIONAL_FILES = (POPULARITY_FILE,)  # copied along wherever present


def publishing(model_dir: Path):
    """Write the model folder in place; checkpoints of an earlier attempt survive (resume)."""
    return folder.publishing(model_dir, KIND, keep=(CHECKPOINTS_DIR,))


def require(model_dir: Path) -> Path:
    """The folder of a complete model artifact with its three files; one clear line otherwise."""
    folder.require_complete(model_dir, KIND)
    folder.require_files(model_dir, KIND, FILES)
    return Path(model_dir)


def read_config(model_dir: Path) -> dict:
    return folder.read_json(require(model_dir) / CONFIG_FILE)


def digests(model_dir: Path) -> dict[str, str]:
    """sha256 of the model's config.json and of config + both towers' weights (+ the popularity prior)."""
    model_dir = require(model_dir)
    config_digest = hashlib.sha256((model_dir / CONFIG_FILE).read_bytes()).hexdigest()
    full = hashlib.sha256()
    present = [name for name in (*FILES, *OPTIONAL_FILES) if (model_dir / name).is_file()]
    for name in present:
        with open(model_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                full.update(block)
    return {"model_config_digest": config_digest, "model_digest": full.hexdigest()}


def write(model_dir: Path, save: Callable[[Path], object]) -> Path:
    """Publish a model folder: ``save(folder)`` writes config and towers (``TwoTower.save``), marker last."""
    with publishing(model_dir) as path:
        save(path)
    return Path(model_dir)
