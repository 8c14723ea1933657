"""A Vertex AI Model Registry REST endpoint on loopback, just large enough for aiplatform.Model.upload:
GET a model (404 until uploaded), POST models:upload (a finished operation), GET a model version. It
records every request, so tests assert on the bodies the SDK would send to Vertex AI."""

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class VertexModelRegistry:
    def __init__(self) -> None:
        self.requests = []
        self.models = {}
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                srv.requests.append(("GET", self.path, None))
                path = urllib.parse.unquote(self.path.split("?")[0])
                if "/models/" in path:
                    mid = path.rsplit("/models/", 1)[1]
                    base = mid.split("@")[0]
                    if base in srv.models:
                        return self._send(200, srv.models[base])
                    return self._send(
                        404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
                    )
                self._send(404, {"error": {"code": 404, "message": "?", "status": "NOT_FOUND"}})

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                srv.requests.append(("POST", self.path, body))
                path = urllib.parse.unquote(self.path.split("?")[0])
                if path.endswith("/models:upload"):
                    parent = path.removeprefix("/v1/").removesuffix("/models:upload")
                    mid = body.get("modelId") or body.get("parentModel", "").rsplit("/", 1)[-1]
                    name = f"{parent}/models/{mid}"
                    ver = str(int(srv.models.get(mid, {}).get("versionId", "0")) + 1)
                    srv.models[mid] = {**body["model"], "name": name, "versionId": ver}
                    return self._send(
                        200,
                        {
                            "name": f"{parent}/operations/{len(srv.requests)}",
                            "done": True,
                            "metadata": {
                                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelOperationMetadata"
                            },
                            "response": {
                                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse",
                                "model": name,
                                "modelVersionId": ver,
                            },
                        },
                    )
                self._send(404, {"error": {"code": 404, "message": "?", "status": "NOT_FOUND"}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
