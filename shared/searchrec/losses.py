"""In-batch retrieval losses over L2-normalised query and item vectors (positives on the diagonal).

- ``multi_margin``: the original objective, torch MultiMarginLoss over the in-batch similarity matrix.
- ``cosine``: cosine-embedding loss: pull each positive pair to cosine 1, push in-batch negatives
  below ``margin``.
- ``softmax``: in-batch sampled softmax with a temperature and the logQ correction of Yi et al.
  (RecSys 2019): subtract the log of each candidate's sampling probability from its logit, so that
  popular items, which are sampled as negatives more often, are not over-penalised.

Queries are [B, D] (one vector per row) or [B, K, D] (K interests, multi-interest query tower): the
score of a (row, item) pair is then the max over the row's interests of the inner product
(:func:`interest_scores`), for the positive and every negative alike, as serving ranks them.

Every loss removes accidental hits: another row of the batch whose item is the same as this row's
positive is not treated as a negative.

Mixed negative sampling (Yang et al., WWW 2020), softmax only: besides the in-batch items, a shared
set of negatives is drawn each step from *every* item of the snapshot (:class:`NegativeSampler`,
uniform or by smoothed popularity), so the item tower also learns to push away items that are never
(or rarely) a training target. Each source gets its own sampling correction: an in-batch column is
corrected by log(B * p(item)) with p the training frequency, a sampled column by log(S * q(item))
with q the sampler's distribution (both: the log of the expected number of times the item is a
candidate). A sampled negative equal to a row's positive is an accidental hit and removed too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

LOSSES = ("multi_margin", "cosine", "softmax")
NEGATIVE_SAMPLING = ("uniform", "popularity")
_NEG = -1e4  # a logit no positive ever loses to (after scaling by 1/temperature it stays finite)


def interest_scores(queries: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """[B, N] scores of queries [B, D] (or [B, K, D]: the max over the K interests) against items [N, D]."""
    if queries.dim() == 3:
        return torch.einsum("bkd,nd->bkn", queries, items).amax(dim=1)
    return queries @ items.T


def interest_diversity(queries: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over rows and over pairs i < j of the squared cosine between a row's K interest vectors
    ([B, K, D]; the first ``dim`` values of each, i.e. without an offset or prior appended): 0 for
    orthogonal interests, 1 for identical (or opposite) ones. A zero scalar for [B, D] or K = 1."""
    if queries.dim() != 3 or queries.shape[1] < 2:
        return queries.new_zeros(())
    q = nn.functional.normalize(queries[..., :dim] if dim else queries, dim=-1)
    k = q.shape[1]
    cos = q @ q.transpose(1, 2)  # [B, K, K]
    i, j = torch.triu_indices(k, k, offset=1, device=q.device)
    return cos[:, i, j].pow(2).mean()


def accidental_hits(item_ids: torch.Tensor) -> torch.Tensor:
    """[B, B] bool: column j holds the same item as row i's positive, j != i."""
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    return same & ~torch.eye(len(item_ids), dtype=torch.bool, device=item_ids.device)


def multi_margin_loss(
    queries: torch.Tensor, items: torch.Tensor, item_ids: torch.Tensor | None = None, *, margin: float = 1.0
) -> torch.Tensor:
    """torch.nn.MultiMarginLoss over the [B, B] cosine matrix with the target on the diagonal."""
    scores = interest_scores(queries, items)
    if item_ids is not None:
        scores = scores.masked_fill(accidental_hits(item_ids), _NEG)
    target = torch.arange(len(scores), device=scores.device)
    return nn.functional.multi_margin_loss(scores, target, margin=margin)


def cosine_loss(
    queries: torch.Tensor, items: torch.Tensor, item_ids: torch.Tensor | None = None, *, margin: float = 0.0
) -> torch.Tensor:
    """Mean of (1 - cos) over positives plus mean of max(0, cos - margin) over in-batch negatives."""
    scores = interest_scores(queries, items)
    n = len(scores)
    positive = 1.0 - scores.diagonal()
    negatives = ~torch.eye(n, dtype=torch.bool, device=scores.device)
    if item_ids is not None:
        negatives &= ~accidental_hits(item_ids)
    negative = (scores - margin).clamp(min=0.0)[negatives]
    negative_term = negative.mean() if negative.numel() else scores.new_zeros(())
    return positive.mean() + negative_term


def sampled_softmax_loss(
    queries: torch.Tensor,
    items: torch.Tensor,
    item_ids: torch.Tensor | None = None,
    *,
    temperature: float = 0.05,
    log_q: torch.Tensor | None = None,
    negatives: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
    negative_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy over the in-batch items [B] plus optional sampled ``negatives`` [S].

    ``log_q`` [B]: log sampling weight of in-batch column j; ``negative_log_q`` [S]: the same for
    the sampled columns (see the module docstring for the per-source correction).
    """
    logits = interest_scores(queries, items) / temperature
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)
    if item_ids is not None:
        logits = logits.masked_fill(accidental_hits(item_ids), _NEG / temperature)
    if negatives is not None:
        sampled = interest_scores(queries, negatives) / temperature
        if negative_log_q is not None:
            sampled = sampled - negative_log_q.unsqueeze(0)
        if item_ids is not None and negative_ids is not None:
            hit = item_ids.unsqueeze(1) == negative_ids.unsqueeze(0)
            sampled = sampled.masked_fill(hit, _NEG / temperature)
        logits = torch.cat([logits, sampled], dim=1)
    target = torch.arange(len(logits), device=logits.device)
    return nn.functional.cross_entropy(logits, target)


class NegativeSampler:
    """Draws shared negatives (rows of the snapshot) from every item: ``uniform``, or ``popularity``
    with q(item) proportional to (training count + 1) ** alpha (alpha < 1 smooths toward uniform;
    the +1 keeps every item of the snapshot drawable)."""

    def __init__(
        self, counts: np.ndarray, mode: str, *, alpha: float = 0.5, device: str | torch.device = "cpu"
    ):
        if mode not in NEGATIVE_SAMPLING:
            raise ValueError(f"negative sampling must be one of {', '.join(NEGATIVE_SAMPLING)}, got {mode!r}")
        counts = np.asarray(counts, dtype=np.float64)
        weights = np.ones_like(counts) if mode == "uniform" else (counts + 1.0) ** float(alpha)
        probs = weights / weights.sum()
        self.probs = torch.as_tensor(probs, dtype=torch.float32, device=device)
        self.log_probs = torch.log(self.probs)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` snapshot rows, drawn with replacement."""
        return torch.multinomial(self.probs, n, replacement=True, generator=generator)


def retrieval_loss(
    name: str,
    queries: torch.Tensor,
    items: torch.Tensor,
    item_ids: torch.Tensor | None = None,
    *,
    temperature: float = 0.05,
    log_q: torch.Tensor | None = None,
    margin: float | None = None,
    negatives: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
    negative_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dispatch by loss name (one of LOSSES); sampled ``negatives`` are for ``softmax`` only."""
    if name == "softmax":
        return sampled_softmax_loss(
            queries,
            items,
            item_ids,
            temperature=temperature,
            log_q=log_q,
            negatives=negatives,
            negative_ids=negative_ids,
            negative_log_q=negative_log_q,
        )
    if negatives is not None:
        raise ValueError(f"sampled negatives need the softmax loss, not {name!r}")
    if name == "multi_margin":
        return multi_margin_loss(queries, items, item_ids, margin=1.0 if margin is None else margin)
    if name == "cosine":
        return cosine_loss(queries, items, item_ids, margin=0.0 if margin is None else margin)
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
