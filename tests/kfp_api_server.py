"""A Kubeflow Pipelines v2beta1 API server on loopback, just large enough for kfp.Client to submit runs.

Every request is matched against the paths of the published API description
(tests/data/kfp_api_single_file.swagger.json, KFP 2.17.0, Apache-2.0, copied from shared/kfp-api) and its
body validated against the schema of that operation's body parameter; every response the server sends
is validated against the operation's 200 schema too. Objects are validated strictly (no property the
schema does not name), so a misspelt field fails the test instead of being dropped by a real server.
int64 fields accept JSON numbers as well as strings, as the proto3 JSON mapping does.

Recorded: each request as `Recorded(method, path, query, body, operation, errors)`. Runs answer GET with
the states in `run_states`, one per poll, the last repeated.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema

SWAGGER = Path(__file__).resolve().parent / "data" / "kfp_api_single_file.swagger.json"


def _strict(node: Any) -> Any:
    """Closed objects and proto3-JSON int64 (number or string), recursively."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        if node.get("type") == "string" and node.get("format") in {"int64", "uint64"}:
            node["type"] = ["string", "integer"]
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern
    spec: dict


class KfpApi:
    """The swagger description: operation lookup and schema validation."""

    def __init__(self, swagger: Path = SWAGGER) -> None:
        if not swagger.is_file():
            raise FileNotFoundError(f"KFP API description missing: {swagger}")
        self.doc = json.loads(swagger.read_text())
        self.definitions = _strict(copy.deepcopy(self.doc["definitions"]))
        self.operations: list[Operation] = []
        for template, methods in self.doc["paths"].items():
            regex = re.sub(r"\\\{[^}]+\\\}", r"[^/:]+", re.escape(template))
            for method, spec in methods.items():
                self.operations.append(Operation(method.upper(), template, re.compile(f"^{regex}$"), spec))
        # literal paths before templated ones (e.g. /pipelines/upload before /pipelines/{pipeline_id})
        self.operations.sort(key=lambda op: op.template.count("{"))

    def operation(self, method: str, path: str) -> Operation | None:
        for op in self.operations:
            if op.method == method and op.pattern.match(path):
                return op
        return None

    def _validate(self, schema: dict, instance: Any) -> list[str]:
        root = {**_strict(copy.deepcopy(schema)), "definitions": self.definitions}
        validator = jsonschema.Draft4Validator(root)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
            for e in validator.iter_errors(instance)
        ]

    def validate_request(self, op: Operation, body: Any) -> list[str]:
        params = [p for p in op.spec.get("parameters", []) if p.get("in") == "body"]
        if not params:
            return [] if body is None else ["body sent to an operation that takes none"]
        if body is None:
            return ["missing body"] if params[0].get("required") else []
        return self._validate(params[0]["schema"], body)

    def validate_response(self, op: Operation, body: Any) -> list[str]:
        schema = op.spec.get("responses", {}).get("200", {}).get("schema")
        return self._validate(schema, body) if schema else []


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    operation: str | None
    errors: list[str] = field(default_factory=list)


class KfpApiServer:
    """Threaded HTTP server on 127.0.0.1; use as a context manager. `url` is the host for kfp.Client."""

    def __init__(self, run_states: list[str] | None = None, multi_user: bool = False) -> None:
        self.api = KfpApi()
        self.requests: list[Recorded] = []
        self.response_errors: list[str] = []
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.run_states = list(run_states or ["SUCCEEDED"])
        self.multi_user = multi_user
        self._polls: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> KfpApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # --- what the tests look at ---

    def calls(self, method: str, template: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.operation == template]

    def all_errors(self) -> list[str]:
        request_errors = [f"{r.method} {r.path}: {e}" for r in self.requests for e in r.errors]
        return request_errors + self.response_errors

    # --- the API ---

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):04d}"

    def _handle(self, method: str, op: Operation, path: str, query: dict, body: Any) -> tuple[int, Any]:
        t = op.template
        if t == "/apis/v2beta1/healthz":
            return 200, {"multi_user": self.multi_user, "pipeline_store": "database"}
        if t == "/apis/v2beta1/experiments" and method == "GET":
            wanted = None
            if "filter" in query:
                predicates = json.loads(query["filter"][0]).get("predicates", [])
                wanted = {
                    p.get("string_value", p.get("stringValue"))
                    for p in predicates
                    if p.get("key") == "display_name"
                }
            found = [e for e in self.experiments.values() if wanted is None or e["display_name"] in wanted]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if t == "/apis/v2beta1/experiments" and method == "POST":
            experiment = {**body, "experiment_id": self._new_id("exp"), "storage_state": "AVAILABLE"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if t == "/apis/v2beta1/experiments/{experiment_id}" and method == "GET":
            experiment = self.experiments.get(path.rsplit("/", 1)[1])
            return (200, experiment) if experiment else (404, {"code": 5, "message": "experiment not found"})
        if t == "/apis/v2beta1/runs" and method == "GET":
            # newest first, whatever the sort asked for; the state each run would report when polled now
            found = [
                {**r, "state": self.run_states[min(self._polls.get(i, 0), len(self.run_states) - 1)]}
                for i, r in sorted(self.runs.items(), key=lambda kv: kv[1]["created_at"], reverse=True)
            ]
            return 200, {"runs": found, "total_size": len(found)} if found else {}
        if t == "/apis/v2beta1/runs" and method == "POST":
            run = {
                **body,
                "run_id": self._new_id("run"),
                "state": "PENDING",
                "storage_state": "AVAILABLE",
                "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            }
            self.runs[run["run_id"]] = run
            return 200, run
        if t == "/apis/v2beta1/runs/{run_id}" and method == "GET":
            run_id = path.rsplit("/", 1)[1]
            if run_id not in self.runs:
                return 404, {"code": 5, "message": "run not found"}
            poll = self._polls.get(run_id, 0)
            self._polls[run_id] = poll + 1
            state = self.run_states[min(poll, len(self.run_states) - 1)]
            return 200, {**self.runs[run_id], "state": state}
        if t == "/apis/v2beta1/recurringruns" and method == "POST":
            recurring = {**body, "recurring_run_id": self._new_id("recurring"), "status": "ENABLED"}
            self.recurring_runs[recurring["recurring_run_id"]] = recurring
            return 200, recurring
        return 501, {"code": 12, "message": f"{method} {t} is not implemented by the test server"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def _serve(self, method: str) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parsed.query)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body: Any = None
                errors: list[str] = []
                if raw:
                    try:
                        body = json.loads(raw)
                    except json.JSONDecodeError as error:
                        errors.append(f"body is not JSON: {error}")
                op = server.api.operation(method, parsed.path)
                with server._lock:
                    if op is None:
                        errors.append("no such operation in the KFP v2beta1 API")
                        status, answer = 404, {"code": 5, "message": f"no route {method} {parsed.path}"}
                    else:
                        errors += server.api.validate_request(op, body)
                        if errors:
                            status, answer = 400, {"code": 3, "message": "; ".join(errors)}
                        else:
                            status, answer = server._handle(method, op, parsed.path, query, body)
                            if status == 200:
                                server.response_errors += [
                                    f"response to {method} {parsed.path}: {e}"
                                    for e in server.api.validate_response(op, answer)
                                ]
                    server.requests.append(
                        Recorded(method, parsed.path, query, body, op.template if op else None, errors)
                    )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self._serve("DELETE")

            def do_PATCH(self) -> None:  # noqa: N802
                self._serve("PATCH")

        return Handler
