"""Object storage: local folders, ``s3://`` (boto3) and ``gs://`` (google-cloud-storage) behind four calls.

- ``s3://bucket/prefix``: boto3 with its usual credential chain; the endpoint comes from
  ``AWS_ENDPOINT_URL`` (honoured by boto3 itself), so MinIO / moto / Ceph work unchanged.
- ``gs://bucket/prefix``: google-cloud-storage with application default credentials; when
  ``STORAGE_EMULATOR_HOST`` is set (the emulator) the client uses anonymous credentials.
- anything else (a path or ``file://``) is a local folder.

No directory is ever renamed (Vertex's Cloud Storage FUSE refuses that): downloads write file by
file into their target and remove what they wrote if they fail; a local upload target is published
as a searchrec artifact folder (``searchrec.artifacts.folder``: completion marker last, foreign
folders refused); ``publish_tree`` applies the same rules to a bucket prefix (in-progress marker object
first, completion record after every other object).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from searchrec import config
from searchrec.artifacts import folder
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

REMOTE_SCHEMES = ("s3", "gs")


# --- URIs -----------------------------------------------------------------------------------------


def is_remote(uri: str | Path) -> bool:
    """True for ``s3://`` and ``gs://`` URIs, False for local paths (and ``file://``)."""
    return isinstance(uri, str) and urlsplit(uri).scheme in REMOTE_SCHEMES


def split_uri(uri: str) -> tuple[str, str, str]:
    """``s3://bucket/a/b/`` -> ("s3", "bucket", "a/b"); raises SearchrecError without a bucket."""
    parts = urlsplit(uri)
    if parts.scheme not in REMOTE_SCHEMES:
        raise SearchrecError(f"{uri!r} is not an s3:// or gs:// URI")
    if not parts.netloc:
        raise SearchrecError(f"{uri!r} names no bucket ({parts.scheme}://bucket/prefix)")
    return parts.scheme, parts.netloc, parts.path.strip("/")


def join_uri(uri: str, *names: str) -> str:
    """Append path segments to a URI or local path with exactly one '/' between them."""
    if not is_remote(uri):
        return str(Path(local_path(uri), *names))
    return "/".join([uri.rstrip("/"), *(n.strip("/") for n in names)])


def local_path(uri: str | Path) -> Path:
    if isinstance(uri, Path):
        return uri
    return Path(uri[len("file://") :]) if uri.startswith("file://") else Path(uri)


# boto3's default session is not safe to build clients from in several threads at once (two runs
# publishing from one process, a caller's thread pool): clients are made one at a time.
_CLIENT_LOCK = threading.Lock()


def _s3_client() -> Any:
    import boto3

    with _CLIENT_LOCK:
        return boto3.client("s3")


def _gcs_client() -> Any:
    from google.cloud import storage

    with _CLIENT_LOCK:
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(
                credentials=AnonymousCredentials(), project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test")
            )
        return storage.Client()


def _remote_error(uri: str, action: str, exc: BaseException) -> SearchrecError:
    text = str(exc).strip().splitlines()
    return SearchrecError(f"cannot {action} {uri}: {text[0] if text else type(exc).__name__}")


# --- listing --------------------------------------------------------------------------------------


def list_dir(uri: str | Path) -> list[str]:
    """Names of the immediate children (files and folders) of a folder, sorted."""
    if not is_remote(uri):
        path = local_path(uri)
        if not path.is_dir():
            raise SearchrecError(f"no such folder {path}")
        return sorted(p.name for p in path.iterdir())
    scheme, bucket, prefix = split_uri(str(uri))
    prefix = f"{prefix}/" if prefix else ""
    names: set[str] = set()
    try:
        if scheme == "s3":
            paginator = _s3_client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
                names.update(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
                names.update(o["Key"][len(prefix) :] for o in page.get("Contents", []))
        else:
            blobs = _gcs_client().list_blobs(bucket, prefix=prefix, delimiter="/")
            for page in blobs.pages:
                names.update(b.name[len(prefix) :] for b in page)
                names.update(p[len(prefix) :].rstrip("/") for p in page.prefixes)
    except SearchrecError:
        raise
    except Exception as exc:
        raise _remote_error(str(uri), "list", exc) from exc
    names.discard("")
    return sorted(names)


def _list_tree(uri: str) -> list[tuple[str, str]]:
    """(object key, path relative to uri) of every object under a remote prefix, recursively."""
    scheme, bucket, prefix = split_uri(uri)
    prefix = f"{prefix}/" if prefix else ""
    out: list[tuple[str, str]] = []
    if scheme == "s3":
        for page in _s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend((o["Key"], o["Key"][len(prefix) :]) for o in page.get("Contents", []))
    else:
        out.extend((b.name, b.name[len(prefix) :]) for b in _gcs_client().list_blobs(bucket, prefix=prefix))
    return [(key, rel) for key, rel in out if rel and not rel.endswith("/")]  # skip folder markers


# --- copying --------------------------------------------------------------------------------------


def download_into(uri: str | Path, target: Path, *, threads: int = config.TRANSFER_THREADS) -> None:
    """Every file under ``uri`` into ``target`` (which exists and is empty), file by file."""
    if not is_remote(uri):
        src = local_path(uri)
        if not src.is_dir():
            raise SearchrecError(f"no such folder {src}")
        shutil.copytree(src, target, dirs_exist_ok=True)
        return
    scheme, bucket, _ = split_uri(str(uri))
    try:
        items = _list_tree(str(uri))
        if not items:
            raise SearchrecError(f"nothing to download under {uri}")
        for _, rel in items:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
        client = _s3_client() if scheme == "s3" else _gcs_client()
        gcs_bucket = client.bucket(bucket) if scheme == "gs" else None

        def fetch(item: tuple[str, str]) -> None:
            key, rel = item
            if scheme == "s3":
                client.download_file(bucket, key, str(target / rel))
            else:
                gcs_bucket.blob(key).download_to_filename(str(target / rel))

        _in_parallel(fetch, items, threads)
    except SearchrecError:
        raise
    except Exception as exc:
        raise _remote_error(str(uri), "download", exc) from exc


def _in_parallel(work: Callable[[Any], None], items: Sequence[Any], threads: int) -> None:
    """``work`` on every item, ``threads`` at a time (object stores answer many requests at once; one
    at a time leaves the link idle between round trips). The first failure is raised."""
    if threads <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="searchrec-io") as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()


def download_tree(
    uri: str | Path, local_dir: str | Path, *, threads: int = config.TRANSFER_THREADS
) -> list[Path]:
    """Copy every file under ``uri`` (recursively) into ``local_dir``; return the local files, sorted.

    ``local_dir`` must be absent or empty; if the copy fails, what it wrote is removed again.
    """
    local_dir = Path(local_dir)
    if local_dir.exists() and (not local_dir.is_dir() or any(local_dir.iterdir())):
        raise SearchrecError(f"cannot download {uri} into {local_dir}: it exists and is not an empty folder")
    created = not local_dir.exists()
    local_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        download_into(uri, local_dir, threads=threads)
    except BaseException:
        folder.clear(local_dir)
        if created:
            local_dir.rmdir()
        raise
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    log.info(
        "downloaded %d files (%.1f MB) from %s to %s in %.1fs",
        len(files),
        sum(p.stat().st_size for p in files) / 1e6,
        uri,
        local_dir,
        time.perf_counter() - t0,
    )
    return files


def _upload_remote(local_dir: Path, rels: list[Path], uri: str, threads: int) -> list[str]:
    """Objects in parallel; completion markers after all the rest, so a reader never sees one early."""
    scheme, bucket, prefix = split_uri(uri)
    keys = {rel: "/".join(p for p in (prefix, rel.as_posix()) if p) for rel in rels}
    try:
        client = _s3_client() if scheme == "s3" else _gcs_client()
        gcs_bucket = client.bucket(bucket) if scheme == "gs" else None

        def put(rel: Path) -> None:
            if scheme == "s3":
                client.upload_file(str(local_dir / rel), bucket, keys[rel])
            else:
                gcs_bucket.blob(keys[rel]).upload_from_filename(str(local_dir / rel))

        markers = [r for r in rels if r.name in folder.MARKERS]
        _in_parallel(put, [r for r in rels if r.name not in folder.MARKERS], threads)
        _in_parallel(put, markers, 1)
    except Exception as exc:
        raise _remote_error(uri, "upload to", exc) from exc
    return [f"{scheme}://{bucket}/{keys[rel]}" for rel in rels]


def upload_tree(
    local_dir: str | Path, uri: str | Path, *, threads: int = config.TRANSFER_THREADS
) -> list[str]:
    """Copy every file under ``local_dir`` to ``uri`` (same relative paths); return the destinations.

    A local target is published as a searchrec folder (``artifacts.folder.publishing``: a folder
    holding files searchrec did not write is refused, not replaced). Remote objects are written one
    by one and become visible individually (object stores have no folder rename).
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise SearchrecError(f"no such folder {local_dir}")
    rels = sorted(p.relative_to(local_dir) for p in local_dir.rglob("*") if p.is_file())
    nbytes = sum((local_dir / r).stat().st_size for r in rels)
    t0 = time.perf_counter()
    if is_remote(uri):
        dests = _upload_remote(local_dir, rels, str(uri), threads)
    else:
        target = local_path(uri)
        with folder.publishing(target, "copy of " + local_dir.name) as out:
            shutil.copytree(local_dir, out, dirs_exist_ok=True)
        dests = [str(target / r) for r in rels]
    log.info(
        "uploaded %d files (%.1f MB) from %s to %s in %.1fs",
        len(rels),
        nbytes / 1e6,
        local_dir,
        uri,
        time.perf_counter() - t0,
    )
    return dests


def publish_tree(
    local_dir: str | Path, uri: str | Path, kind: str, *, threads: int = config.TRANSFER_THREADS
) -> list[str]:
    """``upload_tree`` as a searchrec folder on every backend: a target holding files or objects searchrec
    did not write is refused, an earlier attempt of ours (a marker) is cleared first. Remote: the
    in-progress marker object goes first and is removed last, the completion record after every other
    object, so a half-written copy is never taken for a complete one."""
    if not is_remote(uri):
        return upload_tree(local_dir, uri, threads=threads)
    if not folder.is_complete(local_dir):
        raise SearchrecError(f"cannot publish {local_dir} to {uri}: it is not a complete searchrec folder")
    names = list_dir(uri)
    if names and not set(names) & set(folder.MARKERS):
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        raise SearchrecError(
            f"refusing to write the {kind} copy into {uri}: it holds objects searchrec did not write ({shown})"
        )
    remove_tree(uri)
    in_progress = join_uri(str(uri), folder.IN_PROGRESS_MARKER)
    write_bytes(in_progress, f"{kind}\n".encode())
    try:
        dests = upload_tree(local_dir, uri, threads=threads)
    except BaseException:
        with contextlib.suppress(SearchrecError):
            remove_tree(uri)
        raise
    delete(in_progress)
    return dests


def remove_tree(uri: str | Path, *, threads: int = config.TRANSFER_THREADS) -> int:
    """Delete every file or object under a folder or prefix; return how many. A local folder is emptied
    and removed (a symlinked folder: its link only, the target is left alone)."""
    if not is_remote(uri):
        path = local_path(uri)
        if path.is_symlink() or path.is_file():
            path.unlink()
            return 1
        if not path.is_dir():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        folder.clear(path)
        path.rmdir()
        return count
    scheme, bucket, prefix = split_uri(str(uri))
    if not prefix:
        raise SearchrecError(f"refusing to delete everything in bucket {uri}: name a prefix")
    try:
        keys = [key for key, _ in _list_tree(str(uri))]
        client = _s3_client() if scheme == "s3" else _gcs_client()
        gcs_bucket = client.bucket(bucket) if scheme == "gs" else None

        def drop(key: str) -> None:
            if scheme == "s3":
                client.delete_object(Bucket=bucket, Key=key)
            else:
                gcs_bucket.blob(key).delete()

        _in_parallel(drop, keys, threads)
    except Exception as exc:
        raise _remote_error(str(uri), "delete", exc) from exc
    return len(keys)


# --- single objects -------------------------------------------------------------------------------


def read_bytes(uri: str | Path) -> bytes:
    """The content of one file or object; SearchrecError naming it when it is missing or unreadable."""
    if not is_remote(uri):
        path = local_path(uri)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise SearchrecError(f"cannot read {path}: {exc.strerror or exc}") from None
    scheme, bucket, key = split_uri(str(uri))
    try:
        if scheme == "s3":
            return _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return _gcs_client().bucket(bucket).blob(key).download_as_bytes()
    except Exception as exc:
        raise _remote_error(str(uri), "read", exc) from exc


def exists(uri: str | Path) -> bool:
    """True when the file or object exists (folders: use list_dir)."""
    if not is_remote(uri):
        return local_path(uri).is_file()
    scheme, bucket, key = split_uri(str(uri))
    try:
        if scheme == "s3":
            return _s3_head(_s3_client(), bucket, key)
        return _gcs_client().bucket(bucket).blob(key).exists()
    except Exception as exc:
        raise _remote_error(str(uri), "look up", exc) from exc


def _s3_head(client: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def write_bytes(uri: str | Path, data: bytes) -> str:
    """Write one file or object whole: a single PUT on s3:// / gs:// (readers see the old or the new
    content, never a part); locally a temporary file in the same folder replaced onto the target."""
    if not is_remote(uri):
        from searchrec.artifacts.folder import write_atomic

        return str(write_atomic(local_path(uri), lambda tmp: tmp.write_bytes(data)))
    scheme, bucket, key = split_uri(str(uri))
    try:
        if scheme == "s3":
            _s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        else:
            _gcs_client().bucket(bucket).blob(key).upload_from_string(data)
    except Exception as exc:
        raise _remote_error(str(uri), "write", exc) from exc
    return str(uri)


def delete(uri: str | Path) -> None:
    """Remove one file or object (nothing happens when it is not there)."""
    if not is_remote(uri):
        local_path(uri).unlink(missing_ok=True)
        return
    scheme, bucket, key = split_uri(str(uri))
    try:
        if scheme == "s3":
            _s3_client().delete_object(Bucket=bucket, Key=key)
        else:
            blob = _gcs_client().bucket(bucket).blob(key)
            if blob.exists():
                blob.delete()
    except Exception as exc:
        raise _remote_error(str(uri), "delete", exc) from exc


def read_pointer(uri: str, what: str, key: str) -> dict | None:
    """A small JSON object naming something by ``key`` (a registry's CURRENT, an output root's
    LATEST.json): None when absent, one line naming ``what`` when it is not such an object."""
    import json

    if not exists(uri):
        return None
    try:
        pointer = json.loads(read_bytes(uri))
    except ValueError as error:
        raise SearchrecError(f"{what} {uri} is not JSON: {error}") from None
    if not isinstance(pointer, dict) or not isinstance(pointer.get(key), str):
        raise SearchrecError(f"{what} {uri} names no {key}")
    return pointer
