"""A Vertex AI stand-in on loopback: the v1 REST calls that PipelineJob.submit() and create_schedule() send.

Records every request body; answers a created PipelineJob or Schedule as the service does (the resource
with its name), so that the official client runs its normal code path end to end.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PARENT = r"/v1/(projects/[^/]+/locations/[^/]+)"


@dataclass
class Call:
    method: str
    path: str
    query: dict
    body: dict


class VertexApiServer:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.calls.append(Call("POST", url.path, parse_qs(url.query), body))
                if m := re.fullmatch(PARENT + r"/pipelineJobs", url.path):
                    job_id = parse_qs(url.query).get("pipelineJobId", ["job-1"])[0]
                    return self._send(
                        200, {**body, "name": f"{m.group(1)}/pipelineJobs/{job_id}", "state": 2}
                    )
                if m := re.fullmatch(PARENT + r"/schedules", url.path):
                    return self._send(200, {**body, "name": f"{m.group(1)}/schedules/4242", "state": 1})
                self._send(
                    404, {"error": {"code": 404, "message": f"no route {url.path}", "status": "NOT_FOUND"}}
                )

            def do_GET(self) -> None:  # noqa: N802
                server.calls.append(Call("GET", urlsplit(self.path).path, {}, {}))
                self._send(404, {"error": {"code": 404, "message": "not here", "status": "NOT_FOUND"}})

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

    def posts(self, suffix: str) -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and c.path.endswith(suffix)]

    def __enter__(self) -> VertexApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
