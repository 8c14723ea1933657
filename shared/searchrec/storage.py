"""Object storage: local folders, ``s3://`` (boto3) and ``gs://`` (google-cloud-storage) behind four calls.

- ``s3://bucket/prefix``: boto3 with its usual credential chain; the endpoint comes from
  ``AWS_ENDPOINT_URL`` (honoured by boto3 itself), so MinIO / moto / Ceph work unchanged.
- ``gs://bucket/prefix``: google-cloud-storage with application default credentials; when
  ``STORAGE_EMULATOR_HOST`` is set (the emulator) the client uses anonymous credentials.
- anything else (a path or ``file://``) is a local folder.

Writes are staged: ``staged_dir`` yields a temporary folder next to the target and renames it onto
the target only when the block finishes, so a failure never leaves half-written output.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def _gcs_client() -> Any:
    from google.cloud import storage

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


# --- staging --------------------------------------------------------------------------------------


def _replace_dir(src: Path, target: Path) -> None:
    """Move the finished folder ``src`` onto ``target`` (replacing an existing one)."""
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise SearchrecError(f"{target} exists and is not a folder")
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
        src.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        src.rename(target)


@contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; on success it replaces ``target``.

    On any exception the temporary folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- copying --------------------------------------------------------------------------------------


def download_tree(uri: str | Path, local_dir: str | Path) -> list[Path]:
    """Copy every file under ``uri`` (recursively) into ``local_dir``; return the local files, sorted.

    ``local_dir`` is replaced as a whole, only once every file has arrived.
    """
    local_dir = Path(local_dir)
    t0 = time.perf_counter()
    nbytes = 0
    with staged_dir(local_dir) as tmp:
        if not is_remote(uri):
            src = local_path(uri)
            if not src.is_dir():
                raise SearchrecError(f"no such folder {src}")
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        else:
            scheme, bucket, _ = split_uri(str(uri))
            try:
                items = _list_tree(str(uri))
                if not items:
                    raise SearchrecError(f"nothing to download under {uri}")
                client = _s3_client() if scheme == "s3" else _gcs_client()
                gcs_bucket = client.bucket(bucket) if scheme == "gs" else None
                for key, rel in items:
                    dest = tmp / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if scheme == "s3":
                        client.download_file(bucket, key, str(dest))
                    else:
                        gcs_bucket.blob(key).download_to_filename(str(dest))
            except SearchrecError:
                raise
            except Exception as exc:
                raise _remote_error(str(uri), "download", exc) from exc
        rels = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
        nbytes = sum((tmp / r).stat().st_size for r in rels)
    files = [local_dir / r for r in rels]
    log.info(
        "downloaded %d files (%.1f MB) from %s to %s in %.1fs",
        len(files),
        nbytes / 1e6,
        uri,
        local_dir,
        time.perf_counter() - t0,
    )
    return files


def upload_tree(local_dir: str | Path, uri: str | Path) -> list[str]:
    """Copy every file under ``local_dir`` to ``uri`` (same relative paths); return the destinations.

    Local targets are staged and renamed (replacing the folder); remote objects are written one by
    one and become visible individually (object stores have no folder rename).
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise SearchrecError(f"no such folder {local_dir}")
    rels = sorted(p.relative_to(local_dir) for p in local_dir.rglob("*") if p.is_file())
    nbytes = sum((local_dir / r).stat().st_size for r in rels)
    t0 = time.perf_counter()
    if not is_remote(uri):
        target = local_path(uri)
        with staged_dir(target) as tmp:
            shutil.copytree(local_dir, tmp, dirs_exist_ok=True)
        dests = [str(target / r) for r in rels]
    else:
        scheme, bucket, prefix = split_uri(str(uri))
        dests = []
        try:
            client = _s3_client() if scheme == "s3" else _gcs_client()
            gcs_bucket = client.bucket(bucket) if scheme == "gs" else None
            for rel in rels:
                key = "/".join(p for p in (prefix, rel.as_posix()) if p)
                if scheme == "s3":
                    client.upload_file(str(local_dir / rel), bucket, key)
                else:
                    gcs_bucket.blob(key).upload_from_filename(str(local_dir / rel))
                dests.append(f"{scheme}://{bucket}/{key}")
        except Exception as exc:
            raise _remote_error(str(uri), "upload to", exc) from exc
    log.info(
        "uploaded %d files (%.1f MB) from %s to %s in %.1fs",
        len(rels),
        nbytes / 1e6,
        local_dir,
        uri,
        time.perf_counter() - t0,
    )
    return dests


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
        path = local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return str(path)
    scheme, bucket, key = split_uri(str(uri))
    try:
        if scheme == "s3":
            _s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        else:
            _gcs_client().bucket(bucket).blob(key).upload_from_string(data)
    except Exception as exc:
        raise _remote_error(str(uri), "write", exc) from exc
    return str(uri)
