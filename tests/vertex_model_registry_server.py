"""A Vertex AI Model Registry REST endpoint on loopback, just large enough for aiplatform.Model.upload:
GET a model (404 until uploaded), POST models:upload (a finished operation), GET a model version. It
records every request, so tests assert on the bodies the SDK would send to Vertex AI. Starts at once;
close() when done."""

from __future__ import annotations

import urllib.parse

from tests.loopback import JsonServer, not_found

UPLOAD_METADATA = "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelOperationMetadata"
UPLOAD_RESPONSE = "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse"


class VertexModelRegistry(JsonServer):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, dict | None]] = []
        self.models: dict[str, dict] = {}
        self.start()

    def answer(self, method: str, target: str, body: dict | None) -> tuple[int, dict]:
        self.requests.append((method, target, body if method == "POST" else None))
        path = urllib.parse.unquote(target.split("?")[0])
        if method == "GET" and "/models/" in path:
            base = path.rsplit("/models/", 1)[1].split("@")[0]
            return (200, self.models[base]) if base in self.models else not_found("not found")
        if method == "POST" and path.endswith("/models:upload"):
            body = body or {}
            parent = path.removeprefix("/v1/").removesuffix("/models:upload")
            mid = body.get("modelId") or body.get("parentModel", "").rsplit("/", 1)[-1]
            name = f"{parent}/models/{mid}"
            ver = str(int(self.models.get(mid, {}).get("versionId", "0")) + 1)
            self.models[mid] = {**body["model"], "name": name, "versionId": ver}
            return 200, {
                "name": f"{parent}/operations/{len(self.requests)}",
                "done": True,
                "metadata": {"@type": UPLOAD_METADATA},
                "response": {"@type": UPLOAD_RESPONSE, "model": name, "modelVersionId": ver},
            }
        return not_found("?")
