"""One source of truth for defaults, image names and cluster settings.

Everything a rerun may change is a pipeline parameter whose default comes from here;
everything a platform team sets once (registry, secrets, accelerators) is read from the
environment at compile time, with the defaults below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from searchrec.errors import SearchrecError

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
# --- production defaults of the cluster pipelines, read at compile time ---------------------------
# No host or bucket names in pipeline source: the training/recommend pipelines' defaults for these come
# from the environment, else from a TOML settings file named by $SEARCHREC_SETTINGS:
#   [production]
#   encoder = "gs://ml-models/encoders/rubert-tiny2"        # a folder of `searchrec encoder publish`
#   warehouse_uri = "postgresql://gp-master.internal:5432/dwh"
#   embeddings_uri = "gs://ml-bert4rec/nm_embeddings"
#   warehouse_secret = "projects/ml-platform/secrets/searchrec-greenplum/versions/latest"  # Vertex AI


@dataclass(frozen=True)
class ProductionDefaults:
    """Defaults of the cluster pipelines' parameters; empty: the run must pass the parameter."""

    encoder: str = PRODUCTION_ENCODER_ID
    warehouse_uri: str = ""
    embeddings_uri: str = ""
    warehouse_secret: str = ""  # Secret Manager secret version (Vertex AI only)


def _settings_file(path: str) -> dict[str, str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise SearchrecError(f"{SETTINGS_ENV}: reading TOML settings needs Python 3.11+") from None
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise SearchrecError(f"{SETTINGS_ENV}: cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SearchrecError(f"{SETTINGS_ENV}: {path} is not valid TOML: {error}") from None
    section = data.get("production", {})
    unknown = sorted(set(section) - set(PRODUCTION_SETTING_ENV)) if isinstance(section, dict) else ["?"]
    if unknown:
        raise SearchrecError(
            f"{SETTINGS_ENV}: {path} [production] has unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(PRODUCTION_SETTING_ENV)}"
        )
    return {k: str(v) for k, v in section.items()}


def production_defaults(environ: dict[str, str] | None = None) -> ProductionDefaults:
    """The production defaults: $SEARCHREC_<NAME> over the settings file over ProductionDefaults()."""
    from searchrec.secrets import carries_password  # the one password check (secrets imports config)

    env = os.environ if environ is None else environ
    values = _settings_file(env[SETTINGS_ENV]) if env.get(SETTINGS_ENV) else {}
    values.update({key: env[var] for key, var in PRODUCTION_SETTING_ENV.items() if env.get(var)})
    for key, value in values.items():
        if carries_password(value):  # a default lands in every compiled YAML: never a credential
            raise SearchrecError(
                f"production setting {key} carries a password; give the URI without it "
                "(the pods read the login from a Secret)"
            )
    return ProductionDefaults(**values)


BACKTEST_DAYS = 7  # served recommendations against the purchases of the following N days

# --- training defaults (measured: tests/benchmarks/results/quality.md) -----------------------------
TRAIN_EPOCHS = 15  # at most; early stopping on validation may end sooner (main table: demo 15, hard 8)
TRAIN_BATCH_SIZE = 1024
TRAIN_LR = 0.002
# "cosine": a linear warm-up over the first LR_WARMUP share of the planned steps (epochs x steps per epoch),
# then cosine decay per step to LR_FLOOR x the lr; "constant": AdamW at TRAIN_LR throughout (the default up to
# the eighth round of tests/benchmarks/results/quality.md, where cosine raised the mean validation NDCG@200 with
# the prior over both worlds and 3 seeds by 0.0019)
LR_SCHEDULE = "cosine"
LR_WARMUP = 0.02
LR_FLOOR = 0.01
TRAIN_TEMPERATURE = 0.1  # with the popularity prior: better than 0.05 and 0.2 on validation in both worlds
TRAIN_LOSS = "softmax"  # in-batch sampled softmax with logQ correction
TRAIN_PADDING = "mask"  # empty history slots zeroed ("pad": the [PAD] encoding)
QUERY_TOWER = (
    "attention"  # shared per-query projection + positions + attention pooling; or "concat" (the original)
)
ATTENTION_HEADS = 1  # pooling heads of the attention query tower
# query vectors per user (multi-interest); an item's score is the max over them, served as K searches merged
# by score. K = 4 is best on validation (K 1-6, T 0.07-0.14; tests/benchmarks/results/quality.md); hard's
# holdout Recall@200 0.749 -> 0.809 (mean of 3 seeds 0.815), demo's metrics up on the mean of 3 seeds
INTERESTS = 4
INTEREST_OFFSETS = False  # interests > 1: each interest's scores shifted by a learned per-user offset (worse)
# interests > 1: weight of a training loss term, the mean over pairs of a user's interest vectors of their
# squared cosine (keeps the K interests apart); 0 = none (not computed)
INTEREST_DIVERSITY = 0.0
ITEM_TOWER = "mlp"  # or "residual": geometry-keeping linear map + zero-initialised MLP
SAMPLED_NEGATIVES = 1024  # shared negatives per step drawn from the whole snapshot (0: in-batch only)
NEGATIVE_SAMPLING = "uniform"  # or "popularity": (count + 1) ** NEGATIVE_SAMPLING_ALPHA
NEGATIVE_SAMPLING_ALPHA = 0.5
EVAL_SAMPLE = 5_000  # rows per split scored each epoch (fixed sample); the full holdout once, at the end
# of those, the holdout curve's rows (a report line that never selects; a recall of 0.5 has std 0.011)
CURVE_SAMPLE = 2_000
VALIDATION_DAYS = 3  # the last days of the training split: model selection, never trained on
EARLY_STOPPING_PATIENCE = 2  # epochs without a better validation score before stopping (0: never)
SELECTION_METRIC = "ndcg_at_200"  # validation metric that picks the kept epoch
# The popularity prior (score = cosine + weight * log(1 + training purchases)): its weight is the best of
# these on the validation split, 0 included (so it is off where popularity does not help)
POPULARITY_PRIOR = True
POPULARITY_WEIGHTS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.16, 0.2, 0.3)
# interests > 1: the share of the served top k held for each interest's own best items (a quota; the rest
# by the max score; index.merge_interests), the best of these on the validation split after the prior's
# weight where it beats 0 (the plain max) by more than INTEREST_QUOTA_MIN_GAIN. Off: on validation no
# quota beat the plain max by more than 0.0001 NDCG@200 on hard or demo (quality.md, fifth round)
INTEREST_QUOTA = False
INTEREST_QUOTAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
INTEREST_QUOTA_MIN_GAIN = 0.001  # the quota moves a few tail slots: a smaller gain is a tie

# --- demo (kfp.local) defaults ----------------------------------------------------------------
DEMO_DIR = "data/demo"
DEMO_WAREHOUSE = f"duckdb:///{DEMO_DIR}/warehouse.duckdb"
DEMO_EMBEDDINGS = f"{DEMO_DIR}/embeddings"
DEMO_ENCODER_DIR = f"{DEMO_DIR}/encoder"
DEMO_TRAIN_START = "2026-09-01"
DEMO_TRAIN_END = "2026-10-07"
DEMO_HOLDOUT_START = "2026-10-01"  # purchases on/after this date are the temporal holdout
DEMO_RECOMMEND_START = "2026-10-08"
DEMO_RECOMMEND_END = "2026-10-10"  # the recommendation day: queries up to here ...
DEMO_BACKTEST_START = "2026-10-11"  # ... are backtested against the purchases of the days after it
DEMO_BACKTEST_DAYS = 4
DEMO_DATA_END = "2026-10-14"  # last day of the demo warehouse
DEMO_MIN_ITEM_COUNT = 1  # every bought item a training target (measured: results/quality.md)
DEMO_NUM_SHARDS = 2

# --- environment variables: every name searchrec reads, defined here only -----------------------
# Set by `searchrec run` / `make demo` before the pipelines are built: kfp.local honours task retries,
# and a failing local task should fail at once instead of waiting out the cluster's backoff.
LOCAL_RUN_ENV = "SEARCHREC_LOCAL_RUN"
# Set by local runs: a failing stage also appends its one-line message to this file.
ERRORS_FILE_ENV = "SEARCHREC_ERRORS_FILE"
# Set by `searchrec run --resume`: the run folder whose interrupted train attempt left checkpoints.
RESUME_DIR_ENV = "SEARCHREC_RESUME_DIR"
# Set ("true") by KFP's component command in every task process, on a cluster and in kfp.local alike.
KFP_TASK_ENV = "_KFP_RUNTIME"
GIT_COMMIT_ENV = "SEARCHREC_GIT_COMMIT"  # baked into the images
CACHE_ENV = "SEARCHREC_CACHE_DIR"  # where remote model folders are cached (default ~/.cache/searchrec)
TAG_ENV = "SEARCHREC_IMAGE_TAG"
REGISTRY_ENV = "SEARCHREC_REGISTRY"
# Compile target: "kfp" (default) or "vertex"; what differs is PLATFORM_SETTINGS below.
PLATFORM_ENV = "SEARCHREC_PLATFORM"
KFP_GPU_RESOURCE_ENV = "SEARCHREC_KFP_GPU_RESOURCE"  # Kubernetes resource name of a GPU
KFP_GPU_NODE_SELECTOR_ENV = "SEARCHREC_KFP_GPU_NODE_SELECTOR"  # label=value of the GPU node pool
VERTEX_ACCELERATOR_ENV = "SEARCHREC_VERTEX_ACCELERATOR"  # Vertex AI machine accelerator type
# Production defaults of the cluster pipelines (see production_defaults)
SETTINGS_ENV = "SEARCHREC_SETTINGS"
PRODUCTION_SETTING_ENV = {
    "encoder": "SEARCHREC_ENCODER",
    "warehouse_uri": "SEARCHREC_WAREHOUSE_URI",
    "embeddings_uri": "SEARCHREC_EMBEDDINGS_URI",
    "warehouse_secret": "SEARCHREC_WAREHOUSE_SECRET_VERSION",
}
# The warehouse login where libpq reads it (a Kubernetes Secret on KFP, Secret Manager on Vertex AI)
PG_USER_ENV = "PGUSER"
PG_PASSWORD_ENV = "PGPASSWORD"
WAREHOUSE_SECRET_NAME_ENV = "SEARCHREC_WAREHOUSE_SECRET"
STORAGE_SECRET_NAME_ENV = "SEARCHREC_STORAGE_SECRET"
HOST_ENV = "SEARCHREC_KFP_HOST"
TOKEN_ENV = "SEARCHREC_KFP_TOKEN"  # bearer token for the KFP endpoint; read, never logged
NAMESPACE_ENV = "SEARCHREC_KFP_NAMESPACE"
VERTEX_PROJECT_ENV = "SEARCHREC_VERTEX_PROJECT"
VERTEX_LOCATION_ENV = "SEARCHREC_VERTEX_LOCATION"
VERTEX_LOCATION = "europe-west4"  # Vertex AI region when neither --vertex-location nor its variable is set
PIPELINE_ROOT_ENV = "SEARCHREC_PIPELINE_ROOT"
# Local runs: how long (idle seconds) the warm task processes stay after the run that started them, so
# that the next run from the same shell, folder and virtual environment skips the imports; 0: they end
# with their run. `searchrec warm --stop` ends them at once.
WARM_KEEP_ENV = "SEARCHREC_WARM_KEEP_S"
WARM_KEEP_S = 600.0
SERVICE_ACCOUNT_ENV = "SEARCHREC_SERVICE_ACCOUNT"
# Vertex AI private networking of the run (so that extract reaches a private Greenplum)
VERTEX_NETWORK_ENV = "SEARCHREC_VERTEX_NETWORK"  # VPC peering: projects/<number>/global/networks/<name>
VERTEX_PSC_ATTACHMENT_ENV = "SEARCHREC_VERTEX_PSC_ATTACHMENT"  # PSC interface: a network attachment

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

# Kubernetes Secrets that hold credentials; mapped to env vars in the pods (kfp-kubernetes).
WAREHOUSE_SECRET = os.environ.get(WAREHOUSE_SECRET_NAME_ENV, "searchrec-greenplum")
STORAGE_SECRET = os.environ.get(STORAGE_SECRET_NAME_ENV, "searchrec-object-storage")
WAREHOUSE_SECRET_ENV = {"username": "PGUSER", "password": "PGPASSWORD"}
STORAGE_SECRET_ENV = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
}


# --- platforms: what differs between Kubeflow Pipelines and Vertex AI Pipelines ------------------
# The compile target is chosen per compilation (`searchrec compile --platform`, $SEARCHREC_PLATFORM as
# the fallback); every platform-specific setting of a task comes from this one table.
PLATFORM_NAMES = ("kfp", "vertex")
PLATFORM_ALIASES = {"kubeflow": "kfp"}
DEFAULT_PLATFORM = "kfp"


@dataclass(frozen=True)
class PlatformSettings:
    """Compile-time settings of one target platform.

    gpu_accelerator: the accelerator string of a GPU task. KFP uses it as the Kubernetes resource name of
        the container's limit (`nvidia.com/gpu`); Vertex AI as its machine accelerator type (`NVIDIA_L4`).
    gpu_node_selector: "label=value" that GPU tasks' pods select their node pool by (KFP only; "": none).
    gpu_toleration_key: taint of GPU node pools that GPU tasks tolerate (KFP only).
    kubernetes_secrets: credentials reach the pods from Kubernetes Secrets (kfp-kubernetes).
    secret_manager: the warehouse password is read from Secret Manager at task start.
    single_document: the compiled YAML is one document (no PlatformSpec).
    """

    name: str
    gpu_accelerator: str
    gpu_node_selector: str
    gpu_toleration_key: str
    kubernetes_secrets: bool
    secret_manager: bool
    single_document: bool

    def node_selector(self) -> tuple[str, str] | None:
        """gpu_node_selector as (label, value); None when empty."""
        if not self.gpu_node_selector.strip():
            return None
        key, sep, value = self.gpu_node_selector.partition("=")
        if not sep or not key.strip():
            raise SearchrecError(
                f"GPU node selector of platform {self.name} must be label=value, got {self.gpu_node_selector!r}"
            )
        return key.strip(), value.strip()


PLATFORM_SETTINGS = {
    "kfp": PlatformSettings(
        name="kfp",
        gpu_accelerator=os.environ.get(KFP_GPU_RESOURCE_ENV, "nvidia.com/gpu"),
        # Set by NVIDIA GPU feature discovery / the GPU operator; on GKE without it use
        # cloud.google.com/gke-accelerator=nvidia-tesla-t4; empty: no node selector.
        gpu_node_selector=os.environ.get(KFP_GPU_NODE_SELECTOR_ENV, "nvidia.com/gpu.present=true"),
        gpu_toleration_key="nvidia.com/gpu",
        kubernetes_secrets=True,
        secret_manager=False,
        single_document=False,
    ),
    "vertex": PlatformSettings(
        name="vertex",
        gpu_accelerator=os.environ.get(VERTEX_ACCELERATOR_ENV, "NVIDIA_TESLA_T4"),
        gpu_node_selector="",
        gpu_toleration_key="",
        kubernetes_secrets=False,
        secret_manager=True,
        single_document=True,
    ),
}


def platform_name(name: str | None = None) -> str:
    """The canonical name of `name` (default: $SEARCHREC_PLATFORM, else kfp); SearchrecError if unknown."""
    name = (name or os.environ.get(PLATFORM_ENV) or DEFAULT_PLATFORM).strip().lower()
    name = PLATFORM_ALIASES.get(name, name)
    if name not in PLATFORM_SETTINGS:
        raise SearchrecError(f"unknown platform {name!r}; expected one of {', '.join(PLATFORM_NAMES)}")
    return name


def platform(name: str | None = None) -> PlatformSettings:
    """Settings of the platform `name` (default: $SEARCHREC_PLATFORM, else kfp)."""
    return PLATFORM_SETTINGS[platform_name(name)]
