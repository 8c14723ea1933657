"""Ranking metrics against hand-computed values; exact top-k; the HTML report."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from searchrec.evaluation import (
    evaluate,
    exact_topk,
    hit_ranks,
    mrr,
    ndcg_at_k,
    popularity_topk,
    ranking_metrics,
    recall_at_k,
)
from searchrec.model import TwoTower, TwoTowerConfig
from searchrec.report import line_chart, render_report, write_report

TOPK = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [3, 1, 2]])
TRUE = np.array([2, 6, 10, 3])  # ranks (1-based): 2, 3, miss, 1


def test_hit_ranks() -> None:
    assert hit_ranks(TOPK, TRUE).tolist() == [1, 2, -1, 0]
    with pytest.raises(ValueError):
        hit_ranks(TOPK, TRUE[:2])


def test_recall_ndcg_mrr_hand_values() -> None:
    assert recall_at_k(TOPK, TRUE, 1) == pytest.approx(1 / 4)
    assert recall_at_k(TOPK, TRUE, 2) == pytest.approx(2 / 4)
    assert recall_at_k(TOPK, TRUE, 3) == pytest.approx(3 / 4)
    assert ndcg_at_k(TOPK, TRUE, 3) == pytest.approx((1 / math.log2(3) + 1 / math.log2(4) + 1.0) / 4)
    assert ndcg_at_k(TOPK, TRUE, 2) == pytest.approx((1 / math.log2(3) + 1.0) / 4)
    assert mrr(TOPK, TRUE) == pytest.approx((1 / 2 + 1 / 3 + 0 + 1) / 4)
    m = ranking_metrics(TOPK, TRUE, "model", ks=(1, 3), ndcg_k=3)
    assert set(m) == {"model_recall_at_1", "model_recall_at_3", "model_ndcg_at_3", "model_mrr"}
    assert math.isnan(recall_at_k(np.zeros((0, 3)), np.zeros(0), 3))


def test_popularity_topk_counts_and_breaks_ties_by_id() -> None:
    bought = np.array([5, 7, 7, 9, 9, 3, 3, 3])
    assert popularity_topk(bought, 3).tolist() == [3, 7, 9]
    assert popularity_topk(bought, 10).tolist() == [3, 7, 9, 5]


def test_exact_topk_matches_full_sort_when_chunked() -> None:
    g = torch.Generator().manual_seed(0)
    q, items = torch.randn(37, 8, generator=g), torch.randn(101, 8, generator=g)
    scores, rows = exact_topk(q, items, 10, score_budget=300)  # 2 queries per chunk
    expected = torch.argsort(q @ items.T, dim=1, descending=True)[:, :10]
    assert torch.equal(rows, expected)
    assert torch.allclose(scores, (q @ items.T).gather(1, expected))
    assert exact_topk(q, items[:4], 10)[1].shape == (37, 4)


def test_exact_topk_of_several_interests_ranks_by_their_max_when_chunked() -> None:
    g = torch.Generator().manual_seed(1)
    q, items = torch.randn(23, 3, 8, generator=g), torch.randn(101, 8, generator=g)
    scores, rows = exact_topk(q, items, 10, score_budget=700)  # 2 users (6 vectors) per chunk
    best = torch.einsum("ukd,nd->ukn", q, items).amax(dim=1)
    assert torch.equal(rows, torch.argsort(best, dim=1, descending=True)[:, :10])
    assert torch.allclose(scores, best.gather(1, rows))


@pytest.mark.parametrize(("quota", "product_max_items"), [(0.0, 400), (0.0, 399), (0.5, 400)])
def test_model_topk_of_several_interests_is_what_the_served_search_merges(
    monkeypatch, quota: float, product_max_items: int
) -> None:
    """Without a quota, up to PRODUCT_MAX_ITEMS items, the evaluation ranks by the max in one product;
    the serving stage searches each interest vector in faiss and merges (index.search_users): the same
    lists. A larger catalogue or a quota: the searcher and the merge themselves."""
    from searchrec import evaluation
    from searchrec.evaluation import _searcher, encode_items, model_topk, query_vectors
    from searchrec.stages.index import search_users

    monkeypatch.setattr(evaluation, "PRODUCT_MAX_ITEMS", product_max_items)

    torch.manual_seed(0)
    cfg = TwoTowerConfig(query_dim=6, item_dim=5, history_length=3, output_dim=8, interests=3)
    model = TwoTower(cfg).eval()
    model.cfg.interest_quota = quota
    table, item_emb = torch.randn(30, 6), torch.randn(400, 5)
    hist = torch.randint(0, 30, (64, 3), dtype=torch.int32)
    vectors = encode_items(model, item_emb)
    served = search_users(_searcher(vectors), query_vectors(model, table, hist), 50, quota=quota)[1]
    evaluated = model_topk(model, table, hist, vectors, 50, batch_size=16)
    assert evaluated.shape == (64, 50) and np.array_equal(evaluated, served)
    plain = search_users(_searcher(vectors), query_vectors(model, table, hist), 50)[1]
    assert quota == 0.0 or not np.array_equal(evaluated, plain)  # the quota path is the merge's


def test_evaluate_ranks_the_whole_catalogue() -> None:
    torch.manual_seed(0)
    cfg = TwoTowerConfig(query_dim=4, item_dim=3, history_length=2, output_dim=4, hidden_dim=8, dropout=0.0)
    model = TwoTower(cfg)
    table = torch.randn(6, 4)
    hist = torch.tensor([[0, 1], [2, 3], [4, 5]], dtype=torch.int32)
    item_ids = np.arange(100, 350, dtype=np.int64)  # 250 items > k = 200
    item_emb = torch.randn(250, 3)
    true = np.array([100, 101, 999])  # 999 is not in the catalogue: always a miss
    m = evaluate(model, table, hist, true, item_ids, item_emb, np.array([100, 100, 101, 102]))
    assert m["catalogue_items"] == 250 and m["holdout_examples"] == 3
    assert m["popularity_recall_at_10"] == pytest.approx(2 / 3)  # 100 and 101 are the two most bought
    assert m["popularity_mrr"] == pytest.approx((1 + 1 / 2) / 3)
    assert m["model_recall_at_200"] <= 2 / 3
    # model recall agrees with a brute-force ranking
    with torch.no_grad():
        scores = model.encode_indices(table, hist) @ model.item_tower(item_emb).T
    ranks = [(scores[r] > scores[r, t - 100]).sum().item() for r, t in enumerate(true[:2])]
    assert m["model_recall_at_200"] == pytest.approx(sum(r < 200 for r in ranks) / 3)


def test_evaluate_ranks_with_the_popularity_prior() -> None:
    """The prior enters the evaluated ranking exactly as it is served: cosine + weight * log(1 + count)."""
    torch.manual_seed(0)
    cfg = TwoTowerConfig(query_dim=4, item_dim=3, history_length=2, output_dim=4, hidden_dim=8, dropout=0.0)
    model = TwoTower(cfg)
    table, item_emb = torch.randn(6, 4), torch.randn(250, 3)
    hist = torch.tensor([[0, 1], [2, 3], [4, 5], [1, 5]], dtype=torch.int32)
    item_ids = np.arange(100, 350, dtype=np.int64)
    counts = np.random.default_rng(0).integers(0, 30, 250).astype(np.float64)
    model.set_popularity(item_ids, counts)
    with torch.no_grad():
        scores = (model.encode_indices(table, hist) @ model.item_tower(item_emb).T).numpy()
    scores = scores + 0.2 * np.log1p(counts)[None, :]
    true = item_ids[np.argsort(-scores, axis=1)[:, 9]]  # each row's 10th best under the prior
    model.cfg.popularity_weight = 0.2
    m = evaluate(model, table, hist, true, item_ids, item_emb, np.array([100, 101]))
    assert m["model_recall_at_10"] == 1.0 and m["model_mrr"] == pytest.approx(0.1)
    model.cfg.popularity_weight = 0.0  # the same rows without the prior: not all 10th any more
    assert evaluate(model, table, hist, true, item_ids, item_emb, np.array([100, 101]))["model_mrr"] != 0.1


class _Strict(HTMLParser):
    """Checks that every non-void element is closed in order."""

    VOID = {"meta", "br", "img", "link", "hr", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()


def test_report_is_self_contained_and_well_formed(tmp_path) -> None:
    history = [
        {
            "epoch": 1,
            "loss": 3.2,
            "examples": 100,
            "seconds": 1.0,
            "examples_per_s": 100.0,
            "holdout_recall_at_200": 0.4,
        },
        {
            "epoch": 2,
            "loss": 2.1,
            "examples": 100,
            "seconds": 1.0,
            "examples_per_s": 100.0,
            "holdout_recall_at_200": 0.5,
        },
    ]
    metrics = {
        "model_recall_at_200": 0.5,
        "popularity_recall_at_200": 0.25,
        "ceiling_recall_at_200": 0.8,
        "model_mrr": 0.1,
    }
    result = SimpleNamespace(
        history=history, metrics=metrics, params={"loss": "softmax", "note": "<script>x</script>"}
    )
    path = write_report(tmp_path / "out" / "report.html", result, {"encoder": "a & b"})
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script>" not in html and "&lt;script&gt;" in html
    assert "a &amp; b" in html
    assert "<td>0.5000</td><td>0.2500</td><td>0.8000</td><td>2.0000</td>" in html.replace(' class=""', "")
    parser = _Strict()
    parser.feed(html)
    assert parser.stack == []
    svgs = [html[s : html.index("</svg>", s) + 6] for s in range(len(html)) if html.startswith("<svg", s)]
    assert len(svgs) == 2
    for svg in svgs:
        root = ET.fromstring(svg)  # valid XML
        assert root.tag.endswith("svg")
    assert len(ET.fromstring(svgs[0]).findall(".//{http://www.w3.org/2000/svg}circle")) == 2
    assert "no data" in line_chart("empty", {"x": []})
    assert render_report([], {}, {}).count("no data") == 2


def test_ceiling_reads_a_ground_truth_folder_as_plain_data(tmp_path) -> None:
    import math

    import pandas as pd

    from searchrec.evaluation import ceiling_metrics

    ts = pd.to_datetime(["2026-10-02 10:00", "2026-10-03 11:00", "2026-10-04 12:00"]).astype("datetime64[us]")
    holdout = pd.DataFrame({"user_id": [1, 2, 3], "order_ts": ts, "nm_id": [5, 6, 7]})
    pd.DataFrame({**holdout, "intent_id": [0, 0, 1]}).to_parquet(tmp_path / "purchases.parquet")
    pd.DataFrame({"intent_id": [0, 1], "nm_ids": [[5, 6], [7]]}).to_parquet(tmp_path / "intents.parquet")
    # popularity from training purchases: 5 bought 3 times, 6 once -> intent 0's oracle list is [5, 6]
    m = ceiling_metrics(tmp_path, holdout, np.array([5, 5, 5, 6, 9]), ks=(1, 2))
    assert m == {
        "ceiling_recall_at_1": pytest.approx(2 / 3),
        "ceiling_recall_at_2": pytest.approx(1.0),
        "ceiling_ndcg_at_200": pytest.approx((2 + 1 / math.log2(3)) / 3),
        "ceiling_mrr": pytest.approx(2.5 / 3),
    }


def test_evaluation_does_not_import_the_demo_generator() -> None:
    import subprocess
    import sys

    code = "import sys, searchrec.evaluation; print('searchrec.demo_data' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_report_shows_validation_and_holdout_curves_and_the_kept_epoch() -> None:
    history = [
        {"epoch": e, "loss": 3.0 - e / 2, "validation_recall_at_10": v, "validation_recall_at_200": v + 0.3}
        | {"holdout_recall_at_10": v - 0.05, "holdout_recall_at_200": v + 0.25}
        for e, v in ((1, 0.2), (2, 0.4), (3, 0.35))
    ]
    metrics = {"model_recall_at_200": 0.6, "best_epoch": 2.0, "validation_ndcg_at_200": 0.31}
    html = render_report(history, metrics, {})
    assert "Kept epoch: <b>2</b> of 3 run (best validation ndcg_at_200 0.3100)" in html
    chart = html[html.index('aria-label="Validation and holdout recall per epoch"') :]
    chart = chart[: chart.index("</svg>")]
    for name in ("validation recall@10", "validation recall@200", "holdout recall@10", "holdout recall@200"):
        assert f">{name}</text>" in chart
    assert chart.count("<polyline") == 4
    kept_rows = [row for row in html.split("<tr>") if "✓" in row]
    assert len(kept_rows) == 1 and '<td class="">2</td>' in kept_rows[0]
