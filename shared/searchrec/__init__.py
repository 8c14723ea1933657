"""searchrec: product recommendations from a user's search history (two-tower retrieval on KFP v2)."""

__version__ = "0.1.0"
