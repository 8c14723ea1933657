"""Credentials from Google Secret Manager, read at task start (Vertex AI has no Kubernetes Secrets).

A pipeline's `warehouse_secret` parameter names a secret version,
``projects/<project>/secrets/<secret>/versions/<version>`` (``.../secrets/<secret>`` means the latest
version). Its value is the warehouse password, or JSON ``{"username": ..., "password": ...}``. The value
goes into this process's PGUSER / PGPASSWORD, which libpq reads when extract connects; it is never
logged, never written to an artifact or its metadata, and never part of an error line. Only the secret's
name is. The client is the official `google-cloud-secret-manager`, authenticated as the run's service
account (Application Default Credentials).

The one check that no parameter carries a password (:func:`refuse_passwords`) lives here too: every
command, submit's argument check, the production defaults, the warehouse URI and every stage use it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from searchrec import config
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

SECRET_VERSION_RE = re.compile(
    r"projects/[^/\s]+/(?:locations/[^/\s]+/)?secrets/[^/\s]+(?:/versions/[^/\s]+)?"
)
# Where the pods' libpq reads the warehouse login (the same variables the Kubernetes Secret fills on KFP).
USER_ENV = config.PG_USER_ENV
PASSWORD_ENV = config.PG_PASSWORD_ENV
ACCESSOR_ROLE = "roles/secretmanager.secretAccessor"

# scheme://user:password@host (or scheme://:password@host): a password in a parameter would land in the
# run's record, the local runner's task dump, logs and artifact metadata.
PASSWORD_URI_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")
# libpq's password option, in a URI's query (?password=...) or a key=value connection string.
PASSWORD_OPTION_RE = re.compile(r"(?:^|[?&;\s])password\s*=", re.IGNORECASE)
WHERE_PASSWORDS_GO = (
    "leave it out: the warehouse login comes from PGUSER / PGPASSWORD (a Kubernetes Secret on Kubeflow) "
    "or from warehouse_secret (Secret Manager on Vertex AI)"
)


@dataclass(frozen=True, repr=False)
class WarehouseLogin:
    """A user name (None: keep the URI's or PGUSER) and a password; repr never shows the password."""

    username: str | None
    password: str

    def __repr__(self) -> str:
        return f"WarehouseLogin(username={self.username!r}, password=***)"


def version_name(secret: str) -> str:
    """The full secret version name; a secret without /versions/ means its latest version."""
    secret = secret.strip()
    if not SECRET_VERSION_RE.fullmatch(secret):
        # the given text is not echoed: a password pasted here by mistake must not reach a log line
        raise SearchrecError(
            "warehouse_secret must name a Secret Manager secret version, "
            "projects/<project>/secrets/<name>/versions/<version> (not the password itself)"
        )
    return secret if "/versions/" in secret else f"{secret}/versions/latest"


def client(*, endpoint: str | None = None, credentials: Any = None, transport: str | None = None):
    """The official Secret Manager client (ADC unless `credentials`); `endpoint` e.g. a regional one."""
    from google.cloud import secretmanager

    options = {"api_endpoint": endpoint} if endpoint else None
    return secretmanager.SecretManagerServiceClient(
        credentials=credentials, transport=transport, client_options=options
    )


def read_secret(secret: str, *, secret_client: Any = None) -> str:
    """The value of a secret version, as text. Errors are one line that names the secret, never its value."""
    from google.api_core import exceptions

    name = version_name(secret)
    secret_client = secret_client or client()
    try:
        response = secret_client.access_secret_version(request={"name": name}, timeout=30)
    except exceptions.NotFound:
        raise SearchrecError(f"Secret Manager: secret version {name} does not exist") from None
    except (exceptions.PermissionDenied, exceptions.Forbidden):  # gRPC / REST spelling of the same refusal
        raise SearchrecError(
            f"Secret Manager: permission denied on {name}: grant the run's service account "
            f"{ACCESSOR_ROLE} on that secret"
        ) from None
    except exceptions.Unauthenticated:
        raise SearchrecError(
            f"Secret Manager: not authenticated reading {name}: the task has no usable service account"
        ) from None
    except exceptions.GoogleAPICallError as error:
        raise SearchrecError(f"Secret Manager: cannot read {name}: {type(error).__name__}") from None
    except Exception as error:  # transport errors (DNS, TLS, refused): one line naming the secret
        raise SearchrecError(f"Secret Manager: cannot read {name}: {type(error).__name__}") from None
    data = response.payload.data
    if response.payload.data_crc32c:
        import google_crc32c

        if google_crc32c.value(data) != response.payload.data_crc32c:
            raise SearchrecError(f"Secret Manager: checksum mismatch reading {name}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SearchrecError(f"Secret Manager: {name} is not UTF-8 text") from None


def parse_login(value: str, name: str) -> WarehouseLogin:
    """A password, or JSON with username and password. Errors name the secret and the field only."""
    text = value.strip()
    if not text.startswith("{"):
        if not text:
            raise SearchrecError(f"Secret Manager: {name} is empty")
        return WarehouseLogin(username=None, password=value.rstrip("\r\n"))
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise SearchrecError(f"Secret Manager: {name} looks like JSON but does not parse") from None
    if not isinstance(data, dict) or not isinstance(data.get("password"), str) or not data["password"]:
        raise SearchrecError(f"Secret Manager: {name} is JSON without a non-empty string field 'password'")
    username = data.get("username")
    if username is not None and not isinstance(username, str):
        raise SearchrecError(f"Secret Manager: {name}: field 'username' must be a string")
    return WarehouseLogin(username=username or None, password=data["password"])


def load_warehouse_login(secret: str, *, secret_client: Any = None) -> WarehouseLogin:
    """Read `secret` and put its login into PGUSER / PGPASSWORD of this process (libpq reads them)."""
    name = version_name(secret)
    login = parse_login(read_secret(name, secret_client=secret_client), name)
    os.environ[PASSWORD_ENV] = login.password
    if login.username:
        os.environ[USER_ENV] = login.username
    log.info(
        "warehouse login from Secret Manager %s (%s)",
        name,
        "user and password" if login.username else "password",
    )
    return login


# --- passwords in parameters ----------------------------------------------------------------------


def carries_password(value: object) -> bool:
    """True when a value holds a password: ``scheme://user:pass@host``, or a ``password=`` option (in a
    URI query or a connection string); lists and dicts are searched item by item."""
    if isinstance(value, str):
        return bool(PASSWORD_URI_RE.search(value) or PASSWORD_OPTION_RE.search(value))
    if isinstance(value, dict):
        return any(carries_password(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(carries_password(v) for v in value)
    return False


def refuse_passwords(parameters: Mapping[str, object], *, what: str = "parameter") -> None:
    """One line naming the first parameter that carries a password, never its value.

    Called at every entry point before anything runs or is logged: the CLI (run, demo, preflight,
    submit, schedule), submit's argument check, and every stage (``runtime.stage``), so that a pipeline
    submitted by other means refuses too. A list of ``NAME=VALUE`` items (``--param``) names the item."""
    for name, value in parameters.items():
        if not carries_password(value):
            continue
        if isinstance(value, list | tuple):
            items = [
                v for v in value if isinstance(v, str) and "=" in v and carries_password(v.split("=", 1)[1])
            ]
            if items:
                name = f"{name} {items[0].split('=', 1)[0]}"
        raise SearchrecError(f"{what} {name} carries a password; {WHERE_PASSWORDS_GO}")
