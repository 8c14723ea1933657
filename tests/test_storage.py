"""Object storage on real servers: local folders, moto's S3 server and the GCS emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchrec import storage
from searchrec.artifacts import folder
from searchrec.errors import SearchrecError

TREE = {
    "config.json": b'{"dim": 312}',
    "weights/model.safetensors": bytes(range(256)) * 1000,
    "weights/nested/deep.txt": "вложенный ✓".encode(),
    "dt=2026-10-01/part-0.parquet": b"PAR1",
}


def write_tree(root: Path) -> None:
    for rel, data in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_upload_list_download_round_trip(backend, tmp_path):
    src = tmp_path / "src"
    write_tree(src)
    uri = backend("encoder")
    dests = storage.upload_tree(src, uri)
    assert len(dests) == len(TREE) and all(d.startswith(uri.rstrip("/")) for d in dests)

    listed = [n for n in storage.list_dir(uri) if n not in folder.MARKERS]  # a local copy is marked complete
    assert listed == ["config.json", "dt=2026-10-01", "weights"]
    assert storage.list_dir(uri + "/") == storage.list_dir(uri)
    assert storage.list_dir(storage.join_uri(uri, "weights")) == ["model.safetensors", "nested"]

    files = storage.download_tree(storage.join_uri(uri, "weights"), tmp_path / "got")
    assert files == [tmp_path / "got" / "model.safetensors", tmp_path / "got" / "nested" / "deep.txt"]
    assert read_tree(tmp_path / "got") == {
        k.removeprefix("weights/"): v for k, v in TREE.items() if k.startswith("weights/")
    }
    storage.download_tree(uri, tmp_path / "all")
    assert {k: v for k, v in read_tree(tmp_path / "all").items() if k not in folder.MARKERS} == TREE


def test_download_of_nothing_is_an_error(backend, tmp_path):
    storage.upload_tree(_one_file(tmp_path), backend("x"))
    with pytest.raises(SearchrecError, match=r"(nothing to download under|no such folder)"):
        storage.download_tree(backend("missing"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _one_file(tmp_path: Path) -> Path:
    d = tmp_path / "one"
    d.mkdir()
    (d / "a.txt").write_text("a")
    return d


def test_missing_bucket_is_one_line(s3_endpoint, gcs_endpoint, tmp_path):
    for uri in ("s3://no-such-bucket/x", "gs://no-such-bucket/x"):
        with pytest.raises(SearchrecError, match=rf"cannot list {uri}: ") as err:
            storage.list_dir(uri)
        assert "\n" not in str(err.value)


def test_is_remote_and_uri_checks(tmp_path):
    assert storage.is_remote("s3://b/k") and storage.is_remote("gs://b")
    assert not storage.is_remote("/data/x") and not storage.is_remote("file:///data/x")
    assert not storage.is_remote(tmp_path)
    assert storage.split_uri("s3://bucket/a/b/") == ("s3", "bucket", "a/b")
    with pytest.raises(SearchrecError, match="names no bucket"):
        storage.split_uri("gs:///a")
    assert storage.join_uri("s3://b/a/", "dt=1/") == "s3://b/a/dt=1"
    with pytest.raises(SearchrecError, match="no such folder"):
        storage.list_dir(tmp_path / "absent")


def test_local_upload_refuses_a_foreign_folder_and_replaces_its_own(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "theirs.txt").write_text("not ours")
    with pytest.raises(SearchrecError, match="holds files searchrec did not write"):
        storage.upload_tree(_one_file(tmp_path), target)
    assert read_tree(target) == {"theirs.txt": b"not ours"}
    mine = tmp_path / "mine"
    storage.upload_tree(tmp_path / "one", mine)
    second = tmp_path / "second"
    second.mkdir()
    (second / "b.txt").write_text("b")
    storage.upload_tree(second, mine)  # a folder searchrec wrote is replaced, nothing of it is left
    assert {k for k in read_tree(mine) if k not in folder.MARKERS} == {"b.txt"}
    assert folder.is_complete(mine)


def test_parallel_transfers_copy_the_same_tree(backend, tmp_path):
    src = tmp_path / "many"
    for i in range(40):
        (src / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 3}" / f"f{i:02d}.bin").write_bytes(bytes([i]) * (1000 + i))
    uri = backend("many")
    assert len(storage.upload_tree(src, uri, threads=8)) == 40
    one, eight = tmp_path / "one", tmp_path / "eight"
    storage.download_tree(uri, one, threads=1)
    storage.download_tree(uri, eight, threads=8)
    strip = lambda tree: {k: v for k, v in tree.items() if k not in folder.MARKERS}  # noqa: E731
    assert strip(read_tree(one)) == strip(read_tree(eight)) == read_tree(src)
