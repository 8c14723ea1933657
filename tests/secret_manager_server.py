"""A Secret Manager stand-in on loopback: the v1 REST `versions:access` call, as the official client sends it.

Answers GET /v1/<version name>:access with the payload (base64 data + CRC32C), 404 NOT_FOUND for an
unknown secret and 403 PERMISSION_DENIED for one the caller may not read, in the error body shape of
Google APIs, so that `google.api_core.exceptions` maps them as it does for the real service.
"""

from __future__ import annotations

import base64
import re

import google_crc32c

from tests.loopback import JsonServer, error, not_found

ACCESS_RE = re.compile(r"^/v1/(projects/[^/]+/(?:locations/[^/]+/)?secrets/[^/]+)/versions/([^/:]+):access$")


class SecretManagerServer(JsonServer):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, dict[str, bytes]] = {}  # secret -> version -> value
        self.denied: set[str] = set()
        self.requests: list[str] = []

    def answer(self, method: str, target: str, body: object) -> tuple[int, dict]:
        self.requests.append(target)
        path = target.split("?", 1)[0]
        match = ACCESS_RE.match(path) if method == "GET" else None
        if not match:
            return not_found(f"no route {path}")
        secret, version = match.groups()
        if secret in self.denied:
            return error(
                403, "PERMISSION_DENIED", f"Permission 'secretmanager.versions.access' denied on {secret}"
            )
        versions = self.secrets.get(secret, {})
        if version == "latest" and versions:
            version = max(versions, key=int)
        if version not in versions:
            return not_found(f"Secret [{secret}] not found or has no versions.")
        data = versions[version]
        payload = {"data": base64.b64encode(data).decode(), "dataCrc32c": str(google_crc32c.value(data))}
        return 200, {"name": f"{secret}/versions/{version}", "payload": payload}

    def add(self, secret: str, value: str | bytes, version: str = "1") -> None:
        self.secrets.setdefault(secret, {})[version] = value.encode() if isinstance(value, str) else value

    def client(self):
        """The official client on its REST transport, pointed at this server."""
        from google.auth.credentials import AnonymousCredentials

        from searchrec.secrets import client

        return client(endpoint=self.url, credentials=AnonymousCredentials(), transport="rest")
