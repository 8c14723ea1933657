"""A Secret Manager stand-in on loopback: the v1 REST `versions:access` call, as the official client sends it.

Answers GET /v1/<version name>:access with the payload (base64 data + CRC32C), 404 NOT_FOUND for an
unknown secret and 403 PERMISSION_DENIED for one the caller may not read, in the error body shape of
Google APIs, so that `google.api_core.exceptions` maps them as it does for the real service.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google_crc32c

ACCESS_RE = re.compile(r"^/v1/(projects/[^/]+/(?:locations/[^/]+/)?secrets/[^/]+)/versions/([^/:]+):access$")


class SecretManagerServer:
    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, bytes]] = {}  # secret -> version -> value
        self.denied: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                match = ACCESS_RE.match(path)
                if not match:
                    return self._error(404, "NOT_FOUND", f"no route {path}")
                secret, version = match.groups()
                if secret in server.denied:
                    return self._error(
                        403,
                        "PERMISSION_DENIED",
                        f"Permission 'secretmanager.versions.access' denied on {secret}",
                    )
                versions = server.secrets.get(secret, {})
                if version == "latest" and versions:
                    version = max(versions, key=int)
                if version not in versions:
                    return self._error(404, "NOT_FOUND", f"Secret [{secret}] not found or has no versions.")
                data = versions[version]
                self._send(
                    200,
                    {
                        "name": f"{secret}/versions/{version}",
                        "payload": {
                            "data": base64.b64encode(data).decode(),
                            "dataCrc32c": str(google_crc32c.value(data)),
                        },
                    },
                )

            def _error(self, code: int, status: str, message: str) -> None:
                self._send(code, {"error": {"code": code, "message": message, "status": status}})

            def _send(self, code: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def add(self, secret: str, value: str | bytes, version: str = "1") -> None:
        self.secrets.setdefault(secret, {})[version] = value.encode() if isinstance(value, str) else value

    def client(self):
        """The official client on its REST transport, pointed at this server."""
        from google.auth.credentials import AnonymousCredentials

        from searchrec.secrets import client

        return client(endpoint=self.url, credentials=AnonymousCredentials(), transport="rest")

    def __enter__(self) -> SecretManagerServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
