"""Model options of issue 12: the geometry-keeping residual item tower and the popularity prior."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from searchrec.artifacts import model as model_artifact
from searchrec.errors import SearchrecError
from searchrec.model import TwoTower, TwoTowerConfig

QUERY_DIM, ITEM_DIM = 8, 16


def _model(**kwargs) -> TwoTower:
    torch.manual_seed(0)
    return TwoTower(TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM, **kwargs)).eval()


def _cosines(x: torch.Tensor) -> torch.Tensor:
    x = torch.nn.functional.normalize(x, dim=-1)
    return x @ x.T


def test_residual_item_tower_keeps_the_snapshot_similarity_at_initialisation() -> None:
    items = torch.randn(40, ITEM_DIM, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        residual = _model(item_tower="residual").item_tower(items)
        mlp = _model(item_tower="mlp").item_tower(items)
    snapshot = _cosines(items)
    assert torch.allclose(residual @ residual.T, snapshot, atol=1e-5)
    # the same neighbour order for every item; the plain MLP tower scrambles it
    assert torch.equal(torch.argsort(residual @ residual.T, dim=1), torch.argsort(snapshot, dim=1))
    assert not torch.allclose(mlp @ mlp.T, snapshot, atol=0.05)


def test_residual_item_tower_saves_and_loads(tmp_path: Path) -> None:
    model = _model(item_tower="residual")
    model_artifact.write(tmp_path / "m", model.save)
    loaded = TwoTower.load(tmp_path / "m")
    items = torch.randn(5, ITEM_DIM)
    assert loaded.cfg.item_tower == "residual"
    assert torch.allclose(loaded.item_tower(items), model.item_tower(items))
    with pytest.raises(SearchrecError, match="item_tower must be one of"):
        TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM, item_tower="deep")


def test_popularity_prior_puts_a_popular_item_above_an_equally_similar_rare_one() -> None:
    model = _model(popularity_weight=0.05)
    embedding = torch.randn(1, ITEM_DIM).repeat(3, 1)  # three items the towers cannot tell apart
    nm_ids = np.array([30, 10, 20], dtype=np.int64)
    model.set_popularity(np.array([10, 20], dtype=np.int64), np.array([1.0, 40.0]))  # 30: never bought
    history = torch.randn(2, 5, QUERY_DIM)
    with torch.no_grad():
        queries = model.query_vectors(history, None)
        items = model.item_vectors(embedding, nm_ids)
    assert queries.shape[1] == items.shape[1] == model.vector_dim == model.cfg.output_dim + 1
    scores = queries @ items.T
    assert (torch.argsort(scores, dim=1, descending=True) == torch.tensor([2, 1, 0])).all()  # 20, 10, 30
    expected = 0.05 * np.log1p([0.0, 1.0, 40.0])
    assert np.allclose((scores - scores[:, :1]).numpy(), expected - expected[0], atol=1e-5)
    model.cfg.popularity_weight = 0.0  # without the prior: the three tie
    with torch.no_grad():
        plain = model.query_vectors(history, None) @ model.item_vectors(embedding, nm_ids).T
    assert plain.shape[1] == 3 and torch.allclose(plain, plain[:, :1].expand(-1, 3), atol=1e-6)


def test_popularity_prior_survives_save_and_load(tmp_path: Path) -> None:
    model = _model(popularity_weight=0.02)
    model.set_popularity(np.array([7, 3, 5], dtype=np.int64), np.array([2.0, 0.0, 9.0]))
    model_artifact.write(tmp_path / "m", model.save)
    loaded = TwoTower.load(tmp_path / "m")
    assert loaded.cfg.popularity_weight == 0.02
    ids = np.array([3, 5, 7, 99], dtype=np.int64)
    assert np.allclose(loaded.popularity_feature(ids), np.log1p([0.0, 9.0, 2.0, 0.0]))
    digest = model_artifact.digests(tmp_path / "m")["model_digest"]
    model.set_popularity(np.array([7, 3, 5], dtype=np.int64), np.array([2.0, 1.0, 9.0]))
    model_artifact.write(tmp_path / "m", model.save)  # other counts: an index built before no longer fits
    assert model_artifact.digests(tmp_path / "m")["model_digest"] != digest
    (tmp_path / "m" / model_artifact.POPULARITY_FILE).unlink()
    with pytest.raises(SearchrecError, match="popularity.safetensors is missing"):
        model_artifact.digests(tmp_path / "m")
    with pytest.raises(SearchrecError, match="lacks popularity.safetensors"):
        TwoTower.load(tmp_path / "m")


def test_popularity_prior_needs_the_item_ids() -> None:
    model = _model(popularity_weight=0.02)
    with pytest.raises(SearchrecError, match="needs the nm_id"):
        model.item_vectors(torch.randn(2, ITEM_DIM))


def test_attention_heads_pool_only_the_real_queries() -> None:
    model = _model(query_tower="attention", attention_heads=3)
    assert model.query_tower.attend.out_features == 3
    history = torch.randn(4, 5, QUERY_DIM, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor(
        [[0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.bool
    )
    other = history.clone()
    other[~mask] = torch.randn(int((~mask).sum()), QUERY_DIM)  # what stands in the padded slots
    with torch.no_grad():
        a, b = model.query_tower(history, mask), model.query_tower(other, mask)
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a.norm(dim=1), torch.ones(4), atol=1e-5)
    single = _model(query_tower="attention").query_tower
    assert single.attend.out_features == 1 and single.out[0].in_features == single.out[0].out_features


def _single_vector_attention(tower, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The attention query tower's forward as it was before interests existed (one vector per user)."""
    h = torch.nn.functional.gelu(tower.project(history) + tower.position)
    scores = tower.attend(h).masked_fill(
        ~(mask | ~mask.any(dim=1, keepdim=True)).unsqueeze(-1), float("-inf")
    )
    pooled = torch.einsum("blk,bld->bkd", torch.softmax(scores, dim=1), h).flatten(1)
    return torch.nn.functional.normalize(tower.out(pooled), dim=-1)


def _histories() -> tuple[torch.Tensor, torch.Tensor]:
    history = torch.randn(6, 5, QUERY_DIM, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[0, :3] = mask[1, :] = False
    return history, mask


def test_one_interest_is_the_single_vector_tower() -> None:
    history, mask = _histories()
    for heads in (1, 2):
        model = _model(query_tower="attention", attention_heads=heads)
        assert model.cfg.interests == 1 and model.query_tower.attend.out_features == heads
        with torch.no_grad():
            assert torch.equal(
                model.query_tower(history, mask), _single_vector_attention(model.query_tower, history, mask)
            )
    concat = _model(query_tower="concat")
    assert concat.query_tower.mlp[-1].out_features == concat.cfg.output_dim
    with torch.no_grad():
        plain = torch.nn.functional.normalize(concat.query_tower.mlp(history.flatten(1)), dim=-1)
        assert torch.equal(concat.query_tower(history, mask), plain)


def test_several_interests_give_distinct_unit_vectors() -> None:
    history, mask = _histories()
    for tower in ("attention", "concat"):
        model = _model(query_tower=tower, interests=3, popularity_weight=0.1)
        with torch.no_grad():
            q = model.query_tower(history, mask)
            served = model.query_vectors(history, mask)
        assert q.shape == (6, 3, model.cfg.output_dim)
        assert torch.allclose(q.norm(dim=-1), torch.ones(6, 3), atol=1e-5)
        assert (q[:, 0] - q[:, 1]).norm(dim=-1).min() > 1e-3  # not one vector three times
        assert served.shape == (6, 3, model.vector_dim) and torch.all(served[..., -1] == 0.1)
    attention = _model(query_tower="attention", interests=3, attention_heads=2).query_tower
    assert (
        attention.attend.out_features == 6
        and attention.out[0].in_features == 2 * attention.out[0].out_features
    )


def test_interests_round_trip_and_old_configs_load_as_one(tmp_path: Path) -> None:
    model = _model(query_tower="attention", interests=2)
    model_artifact.write(tmp_path / "m", model.save)
    loaded = TwoTower.load(tmp_path / "m")
    history, mask = _histories()
    assert loaded.cfg.interests == 2
    with torch.no_grad():
        assert torch.equal(loaded.query_tower(history, mask), model.query_tower(history, mask))
    old = _model(query_tower="attention")
    model_artifact.write(tmp_path / "old", old.save)
    config_path = tmp_path / "old" / model_artifact.CONFIG_FILE
    data = json.loads(config_path.read_text())
    del data["interests"]  # a model saved before the option
    config_path.write_text(json.dumps(data))
    assert TwoTower.load(tmp_path / "old").cfg.interests == 1


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "2"])
def test_a_bad_interests_value_is_refused(bad) -> None:
    with pytest.raises(SearchrecError, match="interests must be a positive integer") as error:
        TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM, interests=bad)
    assert "\n" not in str(error.value)


def test_interest_offsets_start_at_zero_and_are_one_more_dimension(tmp_path: Path) -> None:
    history, mask = _histories()
    items = torch.randn(7, ITEM_DIM)
    for tower in ("attention", "concat"):
        plain = _model(query_tower=tower, interests=2)
        model = _model(query_tower=tower, interests=2, interest_offsets=True)
        assert model.vector_dim == plain.vector_dim + 1
        with torch.no_grad():
            q, v = model.query_tower(history, mask), model.item_tower(items)
            assert torch.all(q[..., -1] == 0) and torch.all(v[:, -1] == 1)  # the plain max at first
            assert torch.allclose(q[..., :-1], plain.query_tower(history, mask), atol=1e-6)
    model_artifact.write(tmp_path / "m", model.save)
    assert TwoTower.load(tmp_path / "m").cfg.interest_offsets is True
    single = _model(interest_offsets=True)  # one interest: nothing to offset against, nothing added
    assert single.vector_dim == single.cfg.output_dim and single.query_tower.offset is None
    with pytest.raises(SearchrecError, match="interest_offsets must be true or false"):
        TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM, interests=2, interest_offsets="yes")


def test_interest_quota_is_saved_and_a_model_saved_without_it_serves_the_plain_max(tmp_path: Path) -> None:
    model = _model(interests=3, interest_quota=0.4)
    model_artifact.write(tmp_path / "m", model.save)
    assert TwoTower.load(tmp_path / "m").cfg.interest_quota == 0.4
    config_path = tmp_path / "m" / model_artifact.CONFIG_FILE
    saved = json.loads(config_path.read_text())
    del saved["interest_quota"]  # as the code before the setting wrote it
    config_path.write_text(json.dumps(saved))
    old = TwoTower.load(tmp_path / "m")
    assert old.cfg.interest_quota == 0.0 and old.cfg.interests == 3
    history = torch.randn(4, 5, QUERY_DIM)
    with torch.no_grad():
        assert torch.equal(old.query_vectors(history, None), model.query_vectors(history, None))
    for bad in (-0.1, 1.5):
        with pytest.raises(SearchrecError, match="interest_quota must be within"):
            TwoTowerConfig(query_dim=QUERY_DIM, item_dim=ITEM_DIM, interest_quota=bad)
