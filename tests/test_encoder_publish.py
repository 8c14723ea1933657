"""`searchrec encoder publish`: save_pretrained layout + checksum manifest, verified by the loader."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may reach a model hub, before transformers is imported

import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from searchrec import config  # noqa: E402
from searchrec.artifacts.folder import COMPLETE_MARKER  # noqa: E402
from searchrec.cli import main  # noqa: E402
from searchrec.encoder import (  # noqa: E402
    ENCODER_META_FILE,
    MANIFEST_FILE,
    EncoderSpec,
    build_standin_encoder,
    encode_texts,
    encoder_checksum,
    is_hub_id,
    load_encoder,
)
from searchrec.errors import SearchrecError  # noqa: E402

QUERIES = ["красное платье", "синие джинсы", "кроссовки nike", "чехол iphone 15", "платье красное летнее"]


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    return build_standin_encoder(QUERIES * 3, tmp_path_factory.mktemp("src") / "encoder", vocab_size=200)


@pytest.fixture()
def published(standin: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "published"
    assert main(["encoder", "publish", str(standin), str(dest)]) == 0
    return dest


def test_publish_writes_the_layout_and_a_manifest_the_loader_verifies(standin, published, caplog):
    manifest = json.loads((published / MANIFEST_FILE).read_text())
    on_disk = sorted(p.name for p in published.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", ENCODER_META_FILE, MANIFEST_FILE} <= set(
        on_disk
    )
    assert sorted(manifest["files"]) == sorted(
        n for n in on_disk if n not in (MANIFEST_FILE, COMPLETE_MARKER)
    )
    assert COMPLETE_MARKER in on_disk  # published in place like every artifact folder (no directory rename)
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in manifest["files"].values())
    assert json.loads((published / ENCODER_META_FILE).read_text())["pooling"] == "mean"  # the source's

    with caplog.at_level("INFO"):
        encoder = load_encoder(EncoderSpec(str(published)), device="cpu")
    assert f"verified against {MANIFEST_FILE}" in caplog.text
    original = load_encoder(EncoderSpec(str(standin)), device="cpu")
    assert np.allclose(encode_texts(encoder, QUERIES), encode_texts(original, QUERIES), atol=1e-6)
    assert main(["encoder", "verify", str(published)]) == 0


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda d: (d / "model.safetensors").write_bytes(
                (d / "model.safetensors").read_bytes()[:-1] + b"\0"
            ),
            "model.safetensors does not match its checksum",
        ),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json is listed in .* but missing"),
        (lambda d: (d / "pytorch_model.bin").write_bytes(b"x"), "pytorch_model.bin is not in"),
        (lambda d: (d / MANIFEST_FILE).write_text("{"), "is not a searchrec manifest"),
    ],
    ids=["changed", "missing", "extra", "bad-manifest"],
)
def test_a_damaged_publication_fails_to_load_with_one_line(published, damage, message, capsys):
    damage(published)
    with pytest.raises(SearchrecError, match=message) as error:
        load_encoder(EncoderSpec(str(published)), device="cpu")
    assert "\n" not in str(error.value)
    assert main(["encoder", "verify", str(published)]) == 1
    assert "\n" not in capsys.readouterr().err.strip()


def test_republishing_replaces_the_folder(standin, published, capsys):
    (published / "stale.txt").write_text("from an earlier publication")
    assert main(["encoder", "publish", str(standin), str(published), "--pooling", "cls"]) == 0
    assert f"use it as: --param encoder={published}" in capsys.readouterr().out
    assert not (published / "stale.txt").exists()
    assert load_encoder(EncoderSpec(str(published)), device="cpu").pooling == "cls"


def test_the_encoder_checksum_names_the_exact_weights(standin, published, tmp_path):
    """What lineage records: a published folder's manifest digest; without a manifest, a digest of the
    files' names and sizes and of the weights' bytes."""
    import hashlib

    manifest_digest = hashlib.sha256((published / MANIFEST_FILE).read_bytes()).hexdigest()
    assert encoder_checksum(published) == f"manifest:{manifest_digest}"
    assert load_encoder(EncoderSpec(str(published)), device="cpu").info()["encoder_checksum"] == (
        f"manifest:{manifest_digest}"
    )
    copy = tmp_path / "copy"
    shutil.copytree(standin, copy)
    plain = encoder_checksum(copy)
    assert plain.startswith("files:") and plain == encoder_checksum(standin)  # same files, same digest
    weights = copy / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1  # one bit of one weight: same names, same sizes
    weights.write_bytes(bytes(raw))
    assert encoder_checksum(copy) != plain
    assert main(["encoder", "publish", str(copy), str(tmp_path / "other")]) == 0
    assert encoder_checksum(tmp_path / "other") != encoder_checksum(published)


def _hf_cache(root: Path, repo_id: str, folder: Path) -> Path:
    """A Hugging Face hub cache holding `folder` as the snapshot of `repo_id` (as a download leaves it)."""
    repo = root / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root


def test_publish_a_cached_hub_id_to_s3_then_load_it_from_there(standin, tmp_path, s3_endpoint, monkeypatch):
    import boto3

    hf_home = _hf_cache(tmp_path / "hf", config.PRODUCTION_ENCODER_ID, standin)
    boto3.client("s3").create_bucket(Bucket="ml-models")
    dest = "s3://ml-models/encoders/rubert-tiny2"
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    run = [sys.executable, "-m", "searchrec.cli", "encoder", "publish", config.PRODUCTION_ENCODER_ID, dest]
    result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="ml-models")["Contents"]]
    assert (
        f"encoders/rubert-tiny2/{MANIFEST_FILE}" in keys and "encoders/rubert-tiny2/model.safetensors" in keys
    )

    monkeypatch.setenv("SEARCHREC_CACHE_DIR", str(tmp_path / "cache"))
    encoder = load_encoder(EncoderSpec(dest), device="cpu")
    assert encoder.pooling == config.PRODUCTION_ENCODER_POOLING  # a hub id's pooling: the production default
    meta = json.loads((encoder.local_dir / ENCODER_META_FILE).read_text())
    assert meta["source"] == config.PRODUCTION_ENCODER_ID

    # not in the cache: one line saying how to get it there, nothing downloaded
    env["HF_HOME"] = str(tmp_path / "empty-hf")
    result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "is not in the local Hugging Face cache" in result.stderr.strip().splitlines()[-1]


def test_hub_ids_are_told_from_folders_and_buckets(tmp_path):
    assert is_hub_id("cointegrated/rubert-tiny2") and is_hub_id("bert-base-uncased")
    assert not is_hub_id("gs://m/rubert-tiny2") and not is_hub_id("/models/rubert-tiny2")
    assert not is_hub_id("s3://m/x") and not is_hub_id("./enc")
    with pytest.raises(SearchrecError, match="is a Hugging Face id, not a published folder"):
        main_raise(["encoder", "verify", "cointegrated/rubert-tiny2"])


def main_raise(argv: list[str]) -> None:
    from searchrec.cli import build_parser

    args = build_parser().parse_args(argv)
    args.func(args)
