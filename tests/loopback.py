"""The shared part of the loopback Google API stand-ins (Vertex AI pipelines, Model Registry, Secret Manager):
a threaded JSON server on 127.0.0.1 that hands every request to the stand-in's `answer()`, and the error
body shape of Google APIs, so that `google.api_core.exceptions` maps errors as it does for the services."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def error(code: int, status: str, message: str) -> tuple[int, dict]:
    return code, {"error": {"code": code, "message": message, "status": status}}


def not_found(message: str) -> tuple[int, dict]:
    return error(404, "NOT_FOUND", message)


class JsonServer:
    """Subclasses answer `answer(method, target, body)` -> (status, JSON body); target is the raw path with
    its query. Use as a context manager, or start() and close()."""

    def __init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else None
                code, answer = server.answer(method, self.path, body)
                raw = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def answer(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def start(self):
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
