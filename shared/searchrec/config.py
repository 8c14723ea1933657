"""One source of truth for defaults, image names and cluster settings.

Everything a rerun may change is a pipeline parameter whose default comes from here;
everything a platform team sets once (registry, secrets, accelerators) is read from the
environment at compile time, with the defaults below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# --- model / data defaults (DESIGN.md section 1) ---------------------------------------------
PRODUCTION_ENCODER_ID = "cointegrated/rubert-tiny2"
PRODUCTION_ENCODER_POOLING = "cls"  # rubert-tiny2: CLS token, L2-normalised
PAD_QUERY = "[PAD]"
HISTORY_LENGTH = 5  # queries fed to the query tower
SQL_HISTORY_LENGTH = 10  # queries fetched per example / user by the SQL
LOOKBACK_DAYS = 30  # how far before a purchase the training SQL looks for queries
MAX_ITEMS = 100_000  # training items: the most frequent ...
MIN_ITEM_COUNT = 50  # ... that occur at least this often
MAX_QUERY_LENGTH = 256  # characters kept of a normalised query
MIN_TRAIN_ITEMS = 2  # the in-batch loss needs at least two distinct items
TOP_K = 200
INDEX_KIND = "auto"  # exact below INDEX_AUTO_THRESHOLD items; above, IVF if it measurably pays
INDEX_AUTO_THRESHOLD = 200_000
INDEX_AUTO_MIN_SPEEDUP = 1.5  # auto keeps the approximate index only this much faster than exact
MIN_INDEX_RECALL = 0.95  # an approximate index must reach this recall@TOP_K against exact search
ENCODE_BATCH_SIZE = 512  # texts per encoder forward pass
INFER_BATCH_SIZE = 8192  # users per query-tower pass and search
MIN_HISTORY = 1  # users with fewer usable queries get no recommendations
NUM_SHARDS = 1  # inference shards (the demo shows the fan-out with DEMO_NUM_SHARDS)
SNAPSHOT_MAX_DAYS = 14  # how far the nearest embeddings snapshot may be from the chosen date
EXTRACT_CHUNK_ROWS = 100_000
TRANSFER_THREADS = 16  # objects copied at once to and from s3:// / gs://

# Extract is served from the cache only for windows that ended at least this many days ago (UTC): the
# warehouse still receives late events for recent days.
CACHE_LAG_DAYS = 2

# --- model registry (promote) -----------------------------------------------------------------
PROMOTE_MIN_LIFT = 1.5  # a new model's holdout Recall@200 must be at least this x popularity's ...
PROMOTE_MAX_REGRESSION = 0.01  # ... and at most this much (absolute) below the current model's
LOCAL_MODELS_DIR = "models"  # `searchrec run`'s registry root when --models-uri is not given

# --- demo (kfp.local) defaults ----------------------------------------------------------------
DEMO_DIR = "data/demo"
DEMO_WAREHOUSE = f"duckdb:///{DEMO_DIR}/warehouse.duckdb"
DEMO_EMBEDDINGS = f"{DEMO_DIR}/embeddings"
DEMO_ENCODER_DIR = f"{DEMO_DIR}/encoder"
DEMO_TRAIN_START = "2026-09-01"
DEMO_TRAIN_END = "2026-10-07"
DEMO_HOLDOUT_START = "2026-10-01"  # purchases on/after this date are the temporal holdout
DEMO_RECOMMEND_START = "2026-10-08"
DEMO_RECOMMEND_END = "2026-10-14"
DEMO_MIN_ITEM_COUNT = 3
DEMO_NUM_SHARDS = 2

# --- environment variables: every name searchrec reads, defined here only -----------------------
# Set by `searchrec run` / `make demo` before the pipelines are built: kfp.local honours task retries,
# and a failing local task should fail at once instead of waiting out the cluster's backoff.
LOCAL_RUN_ENV = "SEARCHREC_LOCAL_RUN"
# Set by local runs: a failing stage also appends its one-line message to this file.
ERRORS_FILE_ENV = "SEARCHREC_ERRORS_FILE"
GIT_COMMIT_ENV = "SEARCHREC_GIT_COMMIT"  # baked into the images
CACHE_ENV = "SEARCHREC_CACHE_DIR"  # where remote model folders are cached (default ~/.cache/searchrec)
TAG_ENV = "SEARCHREC_IMAGE_TAG"
REGISTRY_ENV = "SEARCHREC_REGISTRY"
# Compile target: "kubeflow" (default) adds Kubernetes secrets and tolerations (kfp-kubernetes);
# "vertex" leaves them out, since Vertex AI Pipelines takes a single-document pipeline spec.
PLATFORM_ENV = "SEARCHREC_PLATFORM"
ACCELERATOR_ENV = "SEARCHREC_ACCELERATOR"
WAREHOUSE_SECRET_NAME_ENV = "SEARCHREC_WAREHOUSE_SECRET"
STORAGE_SECRET_NAME_ENV = "SEARCHREC_STORAGE_SECRET"
HOST_ENV = "SEARCHREC_KFP_HOST"
TOKEN_ENV = "SEARCHREC_KFP_TOKEN"  # bearer token for the KFP endpoint; read, never logged
NAMESPACE_ENV = "SEARCHREC_KFP_NAMESPACE"
VERTEX_PROJECT_ENV = "SEARCHREC_VERTEX_PROJECT"
VERTEX_LOCATION_ENV = "SEARCHREC_VERTEX_LOCATION"
PIPELINE_ROOT_ENV = "SEARCHREC_PIPELINE_ROOT"
SERVICE_ACCOUNT_ENV = "SEARCHREC_SERVICE_ACCOUNT"

# --- images -------------------------------------------------------------------------------------
STAGES = ("extract", "clean", "encode", "train", "index", "infer")
CPU_STAGES = ("extract", "clean")
GPU_STAGES = ("encode", "train", "index", "infer")
IMAGE_REGISTRY = os.environ.get(REGISTRY_ENV, "europe-docker.pkg.dev/ml-platform/searchrec")
IMAGE_TAG = os.environ.get(TAG_ENV, "dev")


def image(stage: str) -> str:
    """Fully qualified image of a stage; registry and tag come from the environment at compile time."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return f"{IMAGE_REGISTRY}/searchrec-{stage}:{IMAGE_TAG}"


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str
    gpus: int = 0


STAGE_RESOURCES = {
    "extract": Resources(cpu="2", memory="8G"),
    "clean": Resources(cpu="4", memory="32G"),
    "encode": Resources(cpu="8", memory="32G", gpus=1),
    "train": Resources(cpu="8", memory="64G", gpus=1),
    "index": Resources(cpu="8", memory="32G", gpus=1),
    "infer": Resources(cpu="8", memory="32G", gpus=1),
}
ACCELERATOR_TYPE = os.environ.get(ACCELERATOR_ENV, "NVIDIA_TESLA_T4")

# Kubernetes Secrets that hold credentials; mapped to env vars in the pods (kfp-kubernetes).
WAREHOUSE_SECRET = os.environ.get(WAREHOUSE_SECRET_NAME_ENV, "searchrec-greenplum")
STORAGE_SECRET = os.environ.get(STORAGE_SECRET_NAME_ENV, "searchrec-object-storage")
WAREHOUSE_SECRET_ENV = {"username": "PGUSER", "password": "PGPASSWORD"}
STORAGE_SECRET_ENV = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
}
