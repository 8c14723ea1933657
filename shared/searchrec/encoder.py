"""The sentence encoder of search queries, and the offline demo stand-in for it.

Production encodes queries with ``cointegrated/rubert-tiny2`` (312-d, CLS pooling, L2-normalised).
Every encoder is loaded through one path, ``transformers.AutoTokenizer/AutoModel.from_pretrained``,
from a Hugging Face id, a local folder, or an ``s3://`` / ``gs://`` folder (downloaded once into a
local cache). Pooling is configuration: it comes from the spec, else from a ``searchrec_encoder.json``
in the model folder, else from a sentence-transformers ``1_Pooling/config.json``, else the production
default (CLS).

This workplace has no internet and no Russian-capable pretrained BERT to install, so
:func:`build_standin_encoder` builds a rubert-tiny2-shaped BERT offline (a WordPiece tokenizer trained
on the given queries, weights that carry lexical similarity) that loads through the same path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from searchrec import config
from searchrec.artifacts import folder
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

POOLINGS = ("cls", "mean")
ENCODER_META_FILE = "searchrec_encoder.json"  # optional, in a model folder: {"pooling": ..., ...}
REMOTE_SCHEMES = ("s3://", "gs://")
CACHE_ENV = config.CACHE_ENV

# rubert-tiny2's architecture (its config.json): the stand-in has the same shapes, so it costs the same.
RUBERT_TINY2_SHAPE = {
    "hidden_size": 312,
    "num_hidden_layers": 3,
    "num_attention_heads": 12,
    "intermediate_size": 600,
    "max_position_embeddings": 2048,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Characters every stand-in vocabulary holds, so unseen words split into letters, never [UNK].
BASE_ALPHABET = list("абвгдеёжзийклмнопрстуфхцчшщъыьэюяabcdefghijklmnopqrstuvwxyz0123456789")


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder, and how its token states become one query vector.

    ``pooling`` None ("" or "auto") means: the model folder says (``searchrec_encoder.json`` or sentence-transformers'
    ``1_Pooling/config.json``), else ``config.PRODUCTION_ENCODER_POOLING`` ("cls", as rubert-tiny2).
    """

    name_or_path: str = config.PRODUCTION_ENCODER_ID
    pooling: str | None = None
    normalize: bool = True
    max_length: int = 64

    def __post_init__(self) -> None:
        if self.pooling in (
            "",
            "auto",
        ):  # a pipeline parameter cannot be None: "" / "auto" mean "folder says"
            object.__setattr__(self, "pooling", None)
        if not str(self.name_or_path).strip():
            raise SearchrecError("encoder: name_or_path is empty")
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise SearchrecError(
                f"encoder: pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}"
            )
        if self.max_length < 2:
            raise SearchrecError(f"encoder: max_length must be at least 2, got {self.max_length}")


@dataclass
class Encoder:
    """A loaded encoder: tokenizer and model on a device, with the pooling resolved."""

    spec: EncoderSpec
    tokenizer: Any  # transformers fast tokenizer
    model: Any  # transformers PreTrainedModel (BertModel or alike)
    device: Any  # torch.device
    pooling: str
    local_dir: Path | None  # the folder the weights came from (None for a Hugging Face id)
    checksum: str = ""  # encoder_checksum(local_dir): which weights exactly ("" for a Hugging Face id)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def info(self) -> dict[str, Any]:
        """What encode writes to encoder.json (``artifacts.encoded.INFO_FILE``)."""
        return {
            "encoder": self.spec.name_or_path,
            "pooling": self.pooling,
            "normalize": self.spec.normalize,
            "dim": self.dim,
            "max_length": self.spec.max_length,
            "encoder_checksum": self.checksum,
        }


# --- loading ------------------------------------------------------------------------------------


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "searchrec")


def _fetch_remote(uri: str) -> Path:
    """Download a model folder from object storage once; later calls reuse the cached copy."""
    key = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    target = _cache_root() / "encoders" / key
    if folder.is_complete(target):
        log.info("encoder: using cached copy of %s at %s", uri, target)
        return target
    try:
        from searchrec.storage import download_into
    except ImportError as error:  # the ml images carry searchrec[storage]
        raise SearchrecError(
            f"encoder: cannot load {uri}: object storage support missing ({error})"
        ) from None
    started = time.perf_counter()
    with folder.publishing(target, "encoder cache") as out:  # a half-downloaded copy is never reused
        download_into(uri, out)
    log.info("encoder: downloaded %s to %s in %.1f s", uri, target, time.perf_counter() - started)
    return target


def _resolve_source(name_or_path: str) -> tuple[str, Path | None]:
    """(what to pass to from_pretrained, the local folder or None for a hub id)."""
    if name_or_path.startswith(REMOTE_SCHEMES):
        local = _fetch_remote(name_or_path)
        return str(local), local
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path), path
    # A hub id is "name" or "org/name"; anything else is meant as a folder that is not there.
    looks_like_path = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1 or path.exists()
    if looks_like_path:
        raise SearchrecError(f"encoder: model folder {name_or_path} does not exist (or is not a folder)")
    return name_or_path, None


def _folder_pooling(local_dir: Path | None) -> str | None:
    if local_dir is None:
        return None
    meta = local_dir / ENCODER_META_FILE
    if meta.is_file():
        try:
            pooling = json.loads(meta.read_text()).get("pooling")
        except (json.JSONDecodeError, AttributeError):
            raise SearchrecError(f"encoder: {meta} is not a JSON object") from None
        if pooling not in POOLINGS:
            raise SearchrecError(
                f"encoder: {meta} has pooling {pooling!r}; expected one of {', '.join(POOLINGS)}"
            )
        return pooling
    st_pooling = local_dir / "1_Pooling" / "config.json"  # sentence-transformers layout
    if st_pooling.is_file():
        try:
            modes = dict(json.loads(st_pooling.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError):
            raise SearchrecError(f"encoder: {st_pooling} is not a JSON object") from None
        if modes.get("pooling_mode_mean_tokens"):
            return "mean"
        if modes.get("pooling_mode_cls_token"):
            return "cls"
    return None


def _from_pretrained_offline(source: str, local_dir: Path | None, caller: str, name: str, not_cached: str):
    """(tokenizer, model) by ``from_pretrained`` without any download; one line on failure.

    ``not_cached`` ends the line for a hub id that is not in the local Hugging Face cache."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModel.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        if local_dir is None:
            raise SearchrecError(
                f"{caller}: {name} is not in the local Hugging Face cache{not_cached}"
            ) from None
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SearchrecError(f"{caller}: cannot load {name}: {first}") from None
    return tokenizer, model


def load_encoder(spec: EncoderSpec, device: str | None = None) -> Encoder:
    """Load tokenizer and model with ``from_pretrained`` from a hub id, a local or a bucket folder.

    ``device`` None picks CUDA when available. Raises SearchrecError with one line if it cannot load.
    """
    import torch

    source, local_dir = _resolve_source(spec.name_or_path)
    if local_dir is not None:
        verify_manifest(local_dir, spec.name_or_path)  # a published folder: every file as published
    folder_pooling = _folder_pooling(local_dir)
    pooling = spec.pooling or folder_pooling or config.PRODUCTION_ENCODER_POOLING
    if spec.pooling and folder_pooling and spec.pooling != folder_pooling:
        log.warning(
            "encoder: spec asks for %s pooling, the model folder says %s; using %s",
            spec.pooling,
            folder_pooling,
            spec.pooling,
        )
    started = time.perf_counter()
    # Never a download at run time (air-gapped clusters): a hub id must already be in the local Hugging
    # Face cache ($HF_HOME, e.g. baked into the image); otherwise pass a folder of its weights.
    tokenizer, model = _from_pretrained_offline(
        source,
        local_dir,
        "encoder",
        spec.name_or_path,
        " and nothing is downloaded at run time; pass a folder of its weights (local, s3:// or gs://)",
    )
    if not getattr(tokenizer, "is_fast", False):
        raise SearchrecError(f"encoder: {spec.name_or_path} has no fast tokenizer (tokenizer.json)")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev).eval()
    encoder = Encoder(
        spec=spec,
        tokenizer=tokenizer,
        model=model,
        device=dev,
        pooling=pooling,
        local_dir=local_dir,
        checksum=encoder_checksum(local_dir) if local_dir is not None else "",
    )
    log.info(
        "encoder: loaded %s (%s, dim %d, %s pooling%s, max_length %d) on %s in %.1f s",
        spec.name_or_path,
        type(model).__name__,
        encoder.dim,
        pooling,
        ", L2-normalised" if spec.normalize else "",
        spec.max_length,
        dev,
        time.perf_counter() - started,
    )
    return encoder


# --- publishing: the save_pretrained layout plus a manifest of checksums -------------------------

MANIFEST_FILE = "searchrec_manifest.json"
MANIFEST_FORMAT = 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_files(folder: Path) -> list[str]:
    """Relative paths of every file under `folder`, the manifest itself left out."""
    from searchrec.artifacts.folder import MARKERS

    skip = {MANIFEST_FILE, *MARKERS}  # the artifact completion markers are not the encoder's files
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name not in skip
    )


def folder_manifest(folder: Path, source: str) -> dict[str, Any]:
    """{format, source, files: {relative path: {bytes, sha256}}} of an encoder folder."""
    files = {
        rel: {"bytes": (folder / rel).stat().st_size, "sha256": _sha256(folder / rel)}
        for rel in _folder_files(folder)
    }
    if not files:
        raise SearchrecError(f"encoder: {folder} holds no files to publish")
    return {"format": MANIFEST_FORMAT, "source": source, "files": files}


def verify_manifest(folder: Path, name: str, *, required: bool = False) -> dict[str, Any] | None:
    """Check every file of `folder` against its manifest; None when there is none (and not required).

    One line naming the first file that is missing, changed or not in the manifest."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        if required:
            raise SearchrecError(
                f"encoder: {name} has no {MANIFEST_FILE}: publish it with `searchrec encoder publish`"
            )
        log.info("encoder: %s has no %s (not a published folder); not verified", name, MANIFEST_FILE)
        return None
    try:
        manifest = json.loads(path.read_text())
        files = dict(manifest["files"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise SearchrecError(f"encoder: {name}: {MANIFEST_FILE} is not a searchrec manifest") from None
    for rel, want in sorted(files.items()):
        file = Path(folder) / rel
        if not file.is_file():
            raise SearchrecError(f"encoder: {name}: {rel} is listed in {MANIFEST_FILE} but missing")
        if file.stat().st_size != want.get("bytes") or _sha256(file) != want.get("sha256"):
            raise SearchrecError(f"encoder: {name}: {rel} does not match its checksum in {MANIFEST_FILE}")
    extra = sorted(set(_folder_files(Path(folder))) - set(files))
    if extra:
        raise SearchrecError(f"encoder: {name}: {extra[0]} is not in {MANIFEST_FILE}")
    log.info("encoder: %s verified against %s (%d files)", name, MANIFEST_FILE, len(files))
    return manifest


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx")


def encoder_checksum(folder: Path) -> str:
    """Which encoder exactly, for lineage: `manifest:<sha256 of the manifest>` for a published folder (its
    manifest holds every file's sha256 and is verified on load), else `files:<sha256>` over every file's
    name and size plus the sha256 of the weight files."""
    folder = Path(folder)
    manifest = folder / MANIFEST_FILE
    if manifest.is_file():
        return f"manifest:{_sha256(manifest)}"
    digest = hashlib.sha256()
    for rel in _folder_files(folder):
        file = folder / rel
        digest.update(f"{rel}\t{file.stat().st_size}\n".encode())
        if file.name.endswith(WEIGHT_SUFFIXES):
            digest.update(f"{rel}\t{_sha256(file)}\n".encode())
    return f"files:{digest.hexdigest()}"


def check_published(name_or_path: str) -> dict[str, Any]:
    """The manifest of a published encoder folder (local, s3://, gs://), every file verified."""
    if is_hub_id(name_or_path):
        raise SearchrecError(
            f"encoder: {name_or_path} is a Hugging Face id, not a published folder: "
            f"searchrec encoder publish {name_or_path} gs://<bucket>/encoders/<name>"
        )
    _, local_dir = _resolve_source(name_or_path)
    return verify_manifest(local_dir, name_or_path, required=True)


def is_hub_id(name_or_path: str) -> bool:
    """True for "name" / "org/name" that is no existing local path and no bucket URI."""
    if name_or_path.startswith(REMOTE_SCHEMES) or "://" in name_or_path:
        return False
    if name_or_path.startswith(("/", ".", "~")) or Path(name_or_path).expanduser().exists():
        return False
    return name_or_path.count("/") <= 1


def _save_layout(source: str, out: Path, pooling: str | None) -> None:
    """Load `source` offline and write its save_pretrained layout and searchrec_encoder.json to `out`."""
    resolved, local_dir = _resolve_source(source)
    tokenizer, model = _from_pretrained_offline(
        resolved,
        local_dir,
        "encoder publish",
        source,
        "; download it once on a machine with hub access (HF_HOME), or give a folder of its weights",
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    meta = {
        "pooling": pooling or _folder_pooling(local_dir) or config.PRODUCTION_ENCODER_POOLING,
        "source": source,
    }
    (out / ENCODER_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def publish_encoder(source: str, dest: str, *, pooling: str | None = None) -> dict[str, Any]:
    """Publish an encoder (a Hugging Face id in the local cache, or a folder) to `dest` (a folder, s3://
    or gs://): the save_pretrained layout, searchrec_encoder.json (pooling) and, written last, a manifest
    of every file's checksum that load_encoder verifies. Returns the manifest."""
    from searchrec import storage

    if pooling is not None and pooling not in POOLINGS:
        raise SearchrecError(
            f"encoder publish: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}"
        )
    if not storage.is_remote(dest) and Path(dest).resolve() == Path(source).expanduser().resolve():
        raise SearchrecError("encoder publish: DEST must differ from SRC")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="searchrec-encoder-") as tmp:
        layout, marker = Path(tmp) / "layout", Path(tmp) / "manifest"
        layout.mkdir()
        marker.mkdir()
        _save_layout(source, layout, pooling)
        manifest = folder_manifest(layout, source)
        (marker / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        _upload_then_manifest(layout, marker / MANIFEST_FILE, dest)
    log.info("encoder: published %s to %s (%d files)", source, dest, len(manifest["files"]))
    return manifest


def _upload_then_manifest(layout: Path, manifest: Path, dest: str) -> None:
    """Files first, the manifest last: a folder with a manifest is complete."""
    import shutil

    from searchrec import storage

    if storage.is_remote(dest):
        storage.upload_tree(layout, dest)
        storage.upload_tree(manifest.parent, dest)  # one object, after every other
        return
    from searchrec.artifacts.folder import publishing

    # in place, no directory rename (Cloud Storage FUSE); an earlier publication of ours is replaced
    with publishing(Path(dest), "encoder") as target:
        shutil.copytree(layout, target, dirs_exist_ok=True)
        shutil.copyfile(manifest, target / MANIFEST_FILE)


# --- encoding -----------------------------------------------------------------------------------


@dataclass
class EncodeTiming:
    """Figures of the last :func:`encode_texts` call (for logs and stage metadata)."""

    texts: int = 0
    tokens: int = 0
    batches: int = 0
    tokenize_s: float = 0.0
    model_s: float = 0.0

    @property
    def seconds(self) -> float:
        return self.tokenize_s + self.model_s


def _tokenize(encoder: Encoder, texts: Sequence[str], chunk: int = 65_536) -> list[list[int]]:
    ids: list[list[int]] = []
    for start in range(0, len(texts), chunk):
        batch = encoder.tokenizer(
            list(texts[start : start + chunk]),
            add_special_tokens=True,
            truncation=True,
            max_length=encoder.spec.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        ids.extend(batch["input_ids"])
    return ids


def encode_texts(
    encoder: Encoder,
    texts: Sequence[str],
    batch_size: int = 512,
    *,
    sort_by_length: bool = True,
    progress: bool = True,
    timing: EncodeTiming | None = None,
) -> np.ndarray:
    """Encode texts to float32 [len(texts), dim], rows in the order of ``texts``.

    Texts are tokenised once, sorted by token count into batches (little padding), run under
    ``torch.inference_mode()`` with fp16 autocast on CUDA, pooled, optionally L2-normalised, and put
    back in the original order. ``sort_by_length=False`` keeps the given order (the naive way, for
    benchmarks).
    """
    import torch

    if batch_size < 1:
        raise SearchrecError(f"encode: batch_size must be positive, got {batch_size}")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise SearchrecError(f"encode: text {bad} is {type(texts[bad]).__name__}, not str")
    timing = timing if timing is not None else EncodeTiming()
    n = len(texts)
    out = np.zeros((n, encoder.dim), dtype=np.float32)
    timing.texts = n
    if n == 0:
        return out

    started = time.perf_counter()
    ids = _tokenize(encoder, texts)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
    order = np.argsort(-lengths, kind="stable") if sort_by_length else np.arange(n)
    timing.tokenize_s = time.perf_counter() - started
    timing.tokens = int(lengths.sum())

    pad_id = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
    timing.batches = (n + batch_size - 1) // batch_size
    started = time.perf_counter()
    with (
        torch.inference_mode(),
        torch.autocast("cuda", dtype=torch.float16, enabled=encoder.device.type == "cuda"),
    ):
        batches = range(0, n, batch_size)
        for start in tqdm(
            batches, desc="encode", unit="batch", leave=False, disable=not progress, mininterval=1.0
        ):
            rows = order[start : start + batch_size]
            input_ids, mask = _padded_batch(ids, rows, lengths, pad_id)
            out[rows] = _encode_batch(encoder, input_ids, mask)
    timing.model_s = time.perf_counter() - started
    log.debug(
        "encode: %d texts, %d tokens, %d batches in %.2f s", n, timing.tokens, timing.batches, timing.seconds
    )
    return out


def _padded_batch(
    ids: list[list[int]], rows: np.ndarray, lengths: np.ndarray, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask [len(rows), longest of the batch], padded on the right."""
    width = int(lengths[rows].max())
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for j, row in enumerate(rows):
        seq = ids[row]
        input_ids[j, : len(seq)] = seq
        mask[j, : len(seq)] = 1
    return input_ids, mask


def _encode_batch(encoder: Encoder, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One forward pass, pooled (CLS or masked mean) and optionally L2-normalised: float32 [rows, dim]."""
    import torch

    input_t = torch.from_numpy(input_ids).to(encoder.device, non_blocking=True)
    mask_t = torch.from_numpy(mask).to(encoder.device, non_blocking=True)
    hidden = encoder.model(input_ids=input_t, attention_mask=mask_t).last_hidden_state.float()
    if encoder.pooling == "cls":
        pooled = hidden[:, 0]
    else:
        weights = mask_t.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    if encoder.spec.normalize:
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return pooled.cpu().numpy()


# --- the demo stand-in ----------------------------------------------------------------------------

STANDIN_README = """# searchrec demo encoder: a STAND-IN for cointegrated/rubert-tiny2

This folder is NOT a pretrained language model. It was built offline by
`searchrec.encoder.build_standin_encoder` because this workplace cannot download
rubert-tiny2 (or any Russian-capable pretrained BERT). It exists so that the demo
and the tests run the production code path unchanged:
`AutoTokenizer/AutoModel.from_pretrained(<this folder>)`.

What it is
- Architecture: `BertModel` with rubert-tiny2's shapes (hidden {hidden}, {layers} layers,
  {heads} heads, intermediate {intermediate}, max_position {max_position}), so it costs
  the same compute per token as rubert-tiny2.
- Tokenizer: WordPiece (lowercase, no accent stripping), vocabulary of {vocab} pieces
  trained on {n_texts} query texts (the demo warehouse's queries) plus the Russian and
  Latin alphabets and digits.
- Weights (seed {seed}): each word piece's embedding is the normalised sum of random
  vectors of its character n-grams (n = {ngrams}; fastText-style, `<` marks a word start),
  so pieces that share spelling share direction. Position and token-type embeddings are
  zero (word order is ignored), [CLS]/[SEP] are zero, and every transformer layer's
  attention-output and FFN-output projections are zero, so the residual stream carries
  the (layer-normalised) piece embeddings through unchanged.
- Pooling: mean over tokens, L2-normalised (see `searchrec_encoder.json`); use mean
  pooling, CLS carries nothing here.

What it gives: lexical similarity. Queries with the same words in another order are
identical; typos and Russian inflections of the same words stay close; queries with no
common spelling are near-orthogonal. It knows no synonyms and no semantics.

Production uses `cointegrated/rubert-tiny2` (CLS pooling, L2-normalised), the default of
`searchrec.config.PRODUCTION_ENCODER_ID`.
"""


def _char_ngrams(piece: str, ngrams: Sequence[int]) -> list[str]:
    text = piece[2:] if piece.startswith("##") else "<" + piece
    grams = [text[i : i + n] for n in ngrams for i in range(len(text) - n + 1)]
    return grams or [text]


def _standin_embeddings(vocab: dict[str, int], dim: int, seed: int, ngrams: Sequence[int]) -> np.ndarray:
    """Word-piece embeddings as normalised sums of random character n-gram vectors (deterministic)."""
    pieces = sorted(vocab, key=vocab.__getitem__)
    grams_of = {p: _char_ngrams(p, ngrams) for p in pieces if p not in SPECIAL_TOKENS}
    all_grams = sorted({g for grams in grams_of.values() for g in grams} | {"[PAD]", "[UNK]", "[MASK]"})
    gram_index = {g: i for i, g in enumerate(all_grams)}
    rng = np.random.default_rng(seed)
    gram_vectors = rng.standard_normal((len(all_grams), dim)).astype(np.float32)
    weights = np.zeros((len(vocab), dim), dtype=np.float32)
    for piece, idx in vocab.items():
        if piece in ("[CLS]", "[SEP]"):
            continue  # zero: they add nothing to a mean-pooled query
        grams = [piece] if piece in SPECIAL_TOKENS else grams_of[piece]
        vec = gram_vectors[[gram_index[g] for g in grams]].sum(0)
        weights[idx] = vec / max(float(np.linalg.norm(vec)), 1e-6) * np.sqrt(dim)
    return weights


def _train_wordpiece_vocab(corpus: list[str], vocab_size: int) -> dict[str, int]:
    """Train a WordPiece vocabulary (tokenizers' trainer), deterministically.

    The trainer gives ``##`` continuation pieces ids in hash-map order, and those ids break ties
    between equally frequent merges, so two runs on the same texts can differ (huggingface/tokenizers
    issue 1794). Declaring every ``##<char>`` up front fixes their ids; the vocabulary is then a
    function of the texts alone.
    """
    from tokenizers import BertWordPieceTokenizer

    trainer_side = BertWordPieceTokenizer(lowercase=True, strip_accents=False, clean_text=True)
    normalizer = trainer_side._tokenizer.normalizer
    chars = sorted(
        {c for text in corpus for c in normalizer.normalize_str(text) if not c.isspace()} | set(BASE_ALPHABET)
    )
    trainer_side.train_from_iterator(
        corpus,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[*SPECIAL_TOKENS, *(f"##{c}" for c in chars)],
        initial_alphabet=BASE_ALPHABET,
        limit_alphabet=1000,
        show_progress=False,
    )
    return trainer_side.get_vocab()


def _standin_model(vocab: dict[str, int], seed: int, ngrams: Sequence[int]):
    """A rubert-tiny2-shaped BertModel whose word pieces carry character n-gram similarity and whose
    layers pass their input through unchanged (zeroed residual branches, unit LayerNorms)."""
    import torch
    from transformers import BertConfig, BertModel

    hidden = RUBERT_TINY2_SHAPE["hidden_size"]
    bert_config = BertConfig(vocab_size=len(vocab), pad_token_id=vocab["[PAD]"], **RUBERT_TINY2_SHAPE)
    with torch.random.fork_rng(devices=[]):  # deterministic init without touching the global RNG
        torch.manual_seed(seed)
        model = BertModel(bert_config).eval()  # with the pooler, as rubert-tiny2's checkpoint (unused)
    with torch.no_grad():
        emb = model.embeddings
        emb.word_embeddings.weight.copy_(torch.from_numpy(_standin_embeddings(vocab, hidden, seed, ngrams)))
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        for layer in model.encoder.layer:
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
    return model


def _standin_tokenizer(vocab: dict[str, int]):
    from tokenizers import BertWordPieceTokenizer
    from transformers import PreTrainedTokenizerFast

    wordpiece = BertWordPieceTokenizer(vocab=vocab, lowercase=True, strip_accents=False, clean_text=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=wordpiece._tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=RUBERT_TINY2_SHAPE["max_position_embeddings"],
    )


def _standin_readme(vocab_size: int, n_texts: int, seed: int, ngrams: Sequence[int]) -> str:
    return STANDIN_README.format(
        hidden=RUBERT_TINY2_SHAPE["hidden_size"],
        layers=RUBERT_TINY2_SHAPE["num_hidden_layers"],
        heads=RUBERT_TINY2_SHAPE["num_attention_heads"],
        intermediate=RUBERT_TINY2_SHAPE["intermediate_size"],
        max_position=RUBERT_TINY2_SHAPE["max_position_embeddings"],
        vocab=vocab_size,
        n_texts=n_texts,
        seed=seed,
        ngrams=", ".join(map(str, ngrams)),
    )


def build_standin_encoder(
    texts: Iterable[str],
    out_dir: Path,
    *,
    vocab_size: int = 8000,
    seed: int = 0,
    ngrams: Sequence[int] = (2, 3, 4),
) -> Path:
    """Build the offline demo stand-in for rubert-tiny2 into ``out_dir``; returns ``out_dir``.

    Trains a WordPiece tokenizer on ``texts`` and saves a rubert-tiny2-shaped ``BertModel`` whose
    weights carry lexical similarity (see the README.md it writes). Deterministic under ``seed``
    for the same texts. Loadable by ``AutoTokenizer/AutoModel.from_pretrained(out_dir)``.
    """
    corpus = sorted({t.strip() for t in texts if isinstance(t, str) and t.strip()})
    if not corpus:
        raise SearchrecError("stand-in encoder: no non-empty query texts to train a tokenizer on")
    if vocab_size < len(SPECIAL_TOKENS) + len(BASE_ALPHABET):
        raise SearchrecError(f"stand-in encoder: vocab_size {vocab_size} is too small")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    vocab = _train_wordpiece_vocab(corpus, vocab_size)
    meta = {
        "pooling": "mean",
        "normalize": True,
        "standin_for": config.PRODUCTION_ENCODER_ID,
        "kind": "lexical stand-in: random character n-gram word-piece embeddings, identity transformer layers",
        "seed": seed,
        "vocab_size": len(vocab),
        "ngrams": list(ngrams),
        "trained_on_texts": len(corpus),
    }
    with folder.publishing(out_dir, "stand-in encoder") as path:
        _standin_model(vocab, seed, ngrams).save_pretrained(path)
        _standin_tokenizer(vocab).save_pretrained(path)
        folder.write_json(path / ENCODER_META_FILE, meta)
        (path / "README.md").write_text(_standin_readme(len(vocab), len(corpus), seed, ngrams))
    log.info(
        "stand-in encoder: %d pieces from %d distinct texts, written to %s in %.1f s",
        len(vocab),
        len(corpus),
        out_dir,
        time.perf_counter() - started,
    )
    return out_dir
