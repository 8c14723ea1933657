"""In-batch retrieval losses over L2-normalised query and item vectors (positives on the diagonal).

- ``multi_margin``: the original objective, torch MultiMarginLoss over the in-batch similarity matrix.
- ``cosine``: cosine-embedding loss: pull each positive pair to cosine 1, push in-batch negatives
  below ``margin``.
- ``softmax``: in-batch sampled softmax with a temperature and the logQ correction of Yi et al.
  (RecSys 2019): subtract the log of each candidate's sampling probability from its logit, so that
  popular items, which are sampled as negatives more often, are not over-penalised.

Every loss removes accidental hits: another row of the batch whose item is the same as this row's
positive is not treated as a negative.
"""

from __future__ import annotations

import torch
from torch import nn

LOSSES = ("multi_margin", "cosine", "softmax")
_NEG = -1e4  # a logit no positive ever loses to (after scaling by 1/temperature it stays finite)


def accidental_hits(item_ids: torch.Tensor) -> torch.Tensor:
    """[B, B] bool: column j holds the same item as row i's positive, j != i."""
    same = item_ids.unsqueeze(0) == item_ids.unsqueeze(1)
    return same & ~torch.eye(len(item_ids), dtype=torch.bool, device=item_ids.device)


def multi_margin_loss(
    queries: torch.Tensor, items: torch.Tensor, item_ids: torch.Tensor | None = None, *, margin: float = 1.0
) -> torch.Tensor:
    """torch.nn.MultiMarginLoss over the [B, B] cosine matrix with the target on the diagonal."""
    scores = queries @ items.T
    if item_ids is not None:
        scores = scores.masked_fill(accidental_hits(item_ids), _NEG)
    target = torch.arange(len(scores), device=scores.device)
    return nn.functional.multi_margin_loss(scores, target, margin=margin)


def cosine_loss(
    queries: torch.Tensor, items: torch.Tensor, item_ids: torch.Tensor | None = None, *, margin: float = 0.0
) -> torch.Tensor:
    """Mean of (1 - cos) over positives plus mean of max(0, cos - margin) over in-batch negatives."""
    scores = queries @ items.T
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
) -> torch.Tensor:
    """In-batch softmax cross-entropy; ``log_q`` [B] is log P(item of column j is sampled)."""
    logits = queries @ items.T / temperature
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)
    if item_ids is not None:
        logits = logits.masked_fill(accidental_hits(item_ids), _NEG / temperature)
    target = torch.arange(len(logits), device=logits.device)
    return nn.functional.cross_entropy(logits, target)


def retrieval_loss(
    name: str,
    queries: torch.Tensor,
    items: torch.Tensor,
    item_ids: torch.Tensor | None = None,
    *,
    temperature: float = 0.05,
    log_q: torch.Tensor | None = None,
    margin: float | None = None,
) -> torch.Tensor:
    """Dispatch by loss name (one of LOSSES)."""
    if name == "softmax":
        return sampled_softmax_loss(queries, items, item_ids, temperature=temperature, log_q=log_q)
    if name == "multi_margin":
        return multi_margin_loss(queries, items, item_ids, margin=1.0 if margin is None else margin)
    if name == "cosine":
        return cosine_loss(queries, items, item_ids, margin=0.0 if margin is None else margin)
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
