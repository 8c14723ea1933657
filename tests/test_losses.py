"""In-batch retrieval losses against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from searchrec.losses import (
    NegativeSampler,
    accidental_hits,
    cosine_loss,
    interest_diversity,
    interest_scores,
    multi_margin_loss,
    retrieval_loss,
    sampled_softmax_loss,
)

# Scores = Q @ I.T = [[1.0, 0.6], [0.0, 0.8]]
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
I = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # noqa: E741
DISTINCT = torch.tensor([10, 20])
SAME = torch.tensor([10, 10])


def test_multi_margin_matches_hand_value() -> None:
    # row 0: max(0, 1 - 1.0 + 0.6) / 2 = 0.3; row 1: max(0, 1 - 0.8 + 0.0) / 2 = 0.1
    assert multi_margin_loss(Q, I, DISTINCT).item() == pytest.approx(0.2)
    assert multi_margin_loss(Q, I).item() == pytest.approx(0.2)
    assert multi_margin_loss(Q, I, DISTINCT, margin=0.5).item() == pytest.approx((0.05 + 0.0) / 2)


def test_multi_margin_equals_torch_module() -> None:
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    i = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    expected = torch.nn.MultiMarginLoss()(q @ i.T, torch.arange(8))
    assert multi_margin_loss(q, i, torch.arange(8)).item() == pytest.approx(expected.item())


def test_cosine_matches_hand_value() -> None:
    # positives: (1 - 1.0 + 1 - 0.8) / 2 = 0.1; negatives relu(0.6), relu(0.0): mean 0.3
    assert cosine_loss(Q, I, DISTINCT).item() == pytest.approx(0.4)
    assert cosine_loss(Q, I, DISTINCT, margin=0.5).item() == pytest.approx(0.1 + 0.05)


def test_softmax_matches_hand_value() -> None:
    row0 = -1.0 + math.log(math.exp(1.0) + math.exp(0.6))
    row1 = -0.8 + math.log(math.exp(0.0) + math.exp(0.8))
    assert sampled_softmax_loss(Q, I, DISTINCT, temperature=1.0).item() == pytest.approx((row0 + row1) / 2)
    # temperature 0.5 doubles every logit
    row0 = -2.0 + math.log(math.exp(2.0) + math.exp(1.2))
    row1 = -1.6 + math.log(math.exp(0.0) + math.exp(1.6))
    assert sampled_softmax_loss(Q, I, DISTINCT, temperature=0.5).item() == pytest.approx((row0 + row1) / 2)


def test_logq_correction_subtracts_log_sampling_probability() -> None:
    log_q = torch.log(torch.tensor([0.9, 0.1]))  # column 0 popular, column 1 rare
    # logits - log q: [[1 - ln .9, .6 - ln .1], [0 - ln .9, .8 - ln .1]]
    a, b = 1.0 - math.log(0.9), 0.6 - math.log(0.1)
    c, d = 0.0 - math.log(0.9), 0.8 - math.log(0.1)
    row0 = -a + math.log(math.exp(a) + math.exp(b))
    row1 = -d + math.log(math.exp(c) + math.exp(d))
    got = sampled_softmax_loss(Q, I, DISTINCT, temperature=1.0, log_q=log_q).item()
    assert got == pytest.approx((row0 + row1) / 2)
    # the rare item as a negative now weighs more for row 0, so the loss grows
    assert got > sampled_softmax_loss(Q, I, DISTINCT, temperature=1.0).item()


def test_accidental_hits_are_not_negatives() -> None:
    assert accidental_hits(torch.tensor([1, 2, 1])).tolist() == [
        [False, False, True],
        [False, False, False],
        [True, False, False],
    ]
    # Both rows bought the same item: no negatives left, nothing to push apart.
    assert sampled_softmax_loss(Q, I, SAME, temperature=0.1).item() == pytest.approx(0.0, abs=1e-6)
    assert multi_margin_loss(Q, I, SAME).item() == pytest.approx(0.0)
    assert cosine_loss(Q, I, SAME).item() == pytest.approx(0.1)  # positives only


def test_dispatch_and_gradients() -> None:
    q = torch.nn.functional.normalize(torch.randn(6, 3), dim=1).requires_grad_()
    i = torch.nn.functional.normalize(torch.randn(6, 3), dim=1)
    for name in ("softmax", "multi_margin", "cosine"):
        q.grad = None
        loss = retrieval_loss(name, q, i, torch.arange(6), temperature=0.1, log_q=torch.zeros(6))
        loss.backward()
        assert torch.isfinite(loss) and q.grad is not None and q.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown loss"):
        retrieval_loss("hinge", q, i)


def test_sampled_negatives_join_the_softmax_with_their_own_correction() -> None:
    neg = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # sampled items 30 and 10 (10 is row 0's positive)
    neg_ids, neg_log_q = torch.tensor([30, 10]), torch.log(torch.tensor([0.5, 0.5]))
    got = sampled_softmax_loss(
        Q, I, DISTINCT, temperature=1.0, negatives=neg, negative_ids=neg_ids, negative_log_q=neg_log_q
    ).item()
    # row 0: in-batch [1.0, 0.6], sampled [0 - ln .5, (hit: removed)]
    row0 = -1.0 + math.log(math.exp(1.0) + math.exp(0.6) + math.exp(-math.log(0.5)))
    # row 1: in-batch [0.0, 0.8], sampled [1 - ln .5, 0 - ln .5]
    row1 = -0.8 + math.log(
        math.exp(0.0) + math.exp(0.8) + math.exp(1 - math.log(0.5)) + math.exp(-math.log(0.5))
    )
    assert got == pytest.approx((row0 + row1) / 2)
    with pytest.raises(ValueError, match="softmax"):
        retrieval_loss("cosine", Q, I, DISTINCT, negatives=neg)


def test_negative_sampler_reaches_every_item_of_the_snapshot() -> None:
    counts = np.array([1000.0, 10.0, 0.0, 0.0])  # items 2 and 3 are never a training target
    generator = torch.Generator().manual_seed(0)
    uniform = NegativeSampler(counts, "uniform").sample(4000, generator)
    assert set(uniform.tolist()) == {0, 1, 2, 3}
    assert abs((uniform >= 2).float().mean().item() - 0.5) < 0.05
    popular = NegativeSampler(counts, "popularity", alpha=0.5)
    expected = np.sqrt(counts + 1) / np.sqrt(counts + 1).sum()
    assert np.allclose(popular.probs.numpy(), expected, atol=1e-6)
    assert (popular.sample(4000, generator) >= 2).any()  # smoothed popularity still draws them
    with pytest.raises(ValueError, match="negative sampling"):
        NegativeSampler(counts, "zipf")


def test_with_several_interests_each_item_is_scored_by_its_best_interest() -> None:
    # row 0's interests: e1 and e2; row 1's: e2 twice. Item 0 = e2 (row 0's positive: only its SECOND
    # interest matches), item 1 = e1 (row 1's positive). Max-over-interest scores: [[1, 1], [1, 0]].
    queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    items = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert torch.equal(interest_scores(queries, items), torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    assert torch.equal(
        interest_scores(queries[:, 0], items), queries[:, 0] @ items.T
    )  # one vector: a product
    row0 = -1.0 + math.log(math.exp(1.0) + math.exp(1.0))
    row1 = -0.0 + math.log(math.exp(1.0) + math.exp(0.0))
    got = sampled_softmax_loss(queries, items, DISTINCT, temperature=1.0).item()
    assert got == pytest.approx((row0 + row1) / 2)
    # only the first interest (row 0 cannot reach its positive): a larger loss
    assert sampled_softmax_loss(queries[:, 0], items, DISTINCT, temperature=1.0).item() > got + 0.2
    # sampled negatives are scored by the max too: e1 is row 0's best (1.0) through its first interest
    negatives = torch.tensor([[1.0, 0.0]])
    with_negative = sampled_softmax_loss(
        queries, items, DISTINCT, temperature=1.0, negatives=negatives, negative_ids=torch.tensor([30])
    ).item()
    row0 = -1.0 + math.log(3 * math.exp(1.0))
    row1 = -0.0 + math.log(math.exp(1.0) + math.exp(0.0) + math.exp(0.0))
    assert with_negative == pytest.approx((row0 + row1) / 2)
    # a gradient reaches the second interest of row 0 (its positive's best)
    q = queries.clone().requires_grad_(True)
    sampled_softmax_loss(q, items, DISTINCT, temperature=1.0).backward()
    assert q.grad[0, 1].abs().sum() > 0


def test_interest_diversity_is_the_mean_squared_cosine_between_a_users_interests() -> None:
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(5, 4, 6, generator=generator)  # 5 users, 4 interests, 5 dims + 1 appended value
    brute = []
    for user in queries:
        v = [x[:5] / x[:5].norm() for x in user]
        brute += [float(v[i] @ v[j]) ** 2 for i in range(4) for j in range(i + 1, 4)]
    assert interest_diversity(queries, 5).item() == pytest.approx(sum(brute) / len(brute), rel=1e-5)
    same = torch.tensor([[[1.0, 0.0], [2.0, 0.0]], [[0.0, 1.0], [0.0, -1.0]]])  # parallel, opposite
    assert interest_diversity(same).item() == pytest.approx(1.0)
    apart = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])
    assert interest_diversity(apart).item() == 0.0
    for one in (queries[:, :1], queries[:, 0]):  # one interest, or the single-vector shape: nothing
        assert interest_diversity(one).item() == 0.0
    q = queries.clone().requires_grad_(True)
    interest_diversity(q, 5).backward()
    assert q.grad[..., :5].abs().sum() > 0 and q.grad[..., 5].abs().sum() == 0  # the appended value: none
