"""searchrec: product recommendations from a user's search history (two-tower retrieval on KFP v2)."""

import os as _os

__version__ = "0.1.0"

# Nothing is fetched from a model hub at run time (air-gapped clusters): huggingface_hub otherwise calls
# home even for cached models (its agent registry). Set before any stage imports transformers; an
# explicit HF_HUB_OFFLINE=0 in the environment still wins.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
