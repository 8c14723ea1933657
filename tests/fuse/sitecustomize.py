"""Imitates Vertex AI's Cloud Storage FUSE mount of the pipeline root in every Python process that has
this folder on PYTHONPATH (kfp.local's task subprocesses inherit it): renaming a non-empty directory
under ``$SEARCHREC_TEST_NO_DIR_RENAME_UNDER`` fails with EOPNOTSUPP, as gcsfuse does by default.
File renames stay allowed (gcsfuse supports them). Used by tests/components/test_local_run.py."""

import errno
import os

_ROOT = os.environ.get("SEARCHREC_TEST_NO_DIR_RENAME_UNDER")

if _ROOT:
    _root = os.path.realpath(_ROOT)
    _originals = {"rename": os.rename, "replace": os.replace}

    def _under_root(path) -> bool:
        real = os.path.realpath(os.fspath(path))
        return real == _root or real.startswith(_root + os.sep)

    def _guard(name):
        original = _originals[name]

        def guarded(src, dst, *args, **kwargs):
            is_full_dir = os.path.isdir(src) and not os.path.islink(src) and bool(os.listdir(src))
            if is_full_dir and (_under_root(src) or _under_root(dst)):
                raise OSError(
                    errno.EOPNOTSUPP, "Operation not supported (no directory renames on GCS FUSE)", src
                )
            return original(src, dst, *args, **kwargs)

        return guarded

    os.rename = _guard("rename")
    os.replace = _guard("replace")
