"""The faiss index artifact: ``items.faiss`` (CPU index, row i is item ``nm_ids[i]``), ``nm_ids.npy``
(int64 [n]) and ``index.json`` (kind, n, dim, search parameters, measured recall, snapshot, model digests).

faiss is imported inside the functions: only the index and infer images have it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from searchrec.artifacts import folder
from searchrec.errors import SearchrecError

KIND = "index"
INDEX_FILE = "items.faiss"
IDS_FILE = "nm_ids.npy"
INFO_FILE = "index.json"


def write(index_dir: Path, index: Any, nm_ids: np.ndarray, info: dict) -> None:
    import faiss

    with folder.publishing(index_dir, KIND) as path:
        faiss.write_index(index, str(path / INDEX_FILE))
        np.save(path / IDS_FILE, nm_ids)
        folder.write_json(path / INFO_FILE, info)


def read_info(index_dir: Path) -> dict:
    folder.require_complete(index_dir, KIND)
    folder.require_files(index_dir, KIND, [INFO_FILE])
    return folder.read_json(Path(index_dir) / INFO_FILE)


def read(index_dir: Path) -> tuple[Any, np.ndarray, dict]:
    """(CPU faiss index with its search parameters set, nm_ids int64 [n], index.json)."""
    import faiss

    index_dir = Path(index_dir)
    info = read_info(index_dir)
    folder.require_files(index_dir, KIND, [INDEX_FILE, IDS_FILE])
    try:
        index = faiss.read_index(str(index_dir / INDEX_FILE))
        nm_ids = np.load(index_dir / IDS_FILE)
    except Exception as error:
        raise SearchrecError(
            f"cannot read index folder {index_dir}: {type(error).__name__}: {error}"
        ) from None
    if index.ntotal != len(nm_ids) or index.ntotal != info.get("n"):
        raise SearchrecError(
            f"index folder {index_dir} is inconsistent: {index.ntotal} vectors, {len(nm_ids)} nm_ids, "
            f"index.json n={info.get('n')}"
        )
    params = info.get("params", {})
    if isinstance(index, faiss.IndexIVF) and "nprobe" in params:
        index.nprobe = int(params["nprobe"])
    if isinstance(index, faiss.IndexHNSW) and "efSearch" in params:
        index.hnsw.efSearch = int(params["efSearch"])
    return index, nm_ids.astype(np.int64, copy=False), info
