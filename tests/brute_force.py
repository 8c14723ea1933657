"""Brute-force rankings that the serving code's fast paths are checked against."""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np


def quota_top_k(
    scores: np.ndarray, k: int, quota: float, exclude: Collection[int] = ()
) -> tuple[list[int], list[float]]:
    """One user's served list, from ``scores`` [K, N] of every item for each interest (no search): each
    interest's own top k of the items not in ``exclude``; an item's score is its best among the
    interests whose top k hold it (the max over all interests wherever the max would rank it in the
    top k); each interest's first floor(quota * k / K) items are kept, the other slots go to the best
    of the rest; the list is ordered by score, best first. Returns (item indices, scores)."""
    interests, _ = scores.shape
    share = math.floor(quota * k / interests + 1e-9) if interests > 1 else 0
    found: dict[int, float] = {}
    held: set[int] = set()
    for i in range(interests):
        own = [int(j) for j in np.argsort(-scores[i], kind="stable") if int(j) not in exclude][:k]
        for j in own:
            found[j] = max(found.get(j, -math.inf), float(scores[i, j]))
        held.update(own[:share])
    rest = sorted(set(found) - held, key=lambda j: -found[j])[: k - len(held)]
    chosen = sorted(held | set(rest), key=lambda j: -found[j])
    return chosen, [found[j] for j in chosen]
