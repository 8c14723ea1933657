"""A Vertex AI stand-in on loopback: the v1 REST calls of PipelineJob.submit(), create_schedule(),
PipelineJob.list() and PipelineJob.get().

Records every request; keeps each created PipelineJob and answers it as the service does (the resource with
its name, state and create time), lists them newest first through the list filter's `labels.<key>="<value>"`
terms (AND-ed; any other filter is refused as INVALID_ARGUMENT rather than ignored), so that the official
client runs its normal code path end to end. `finish()` moves a job on as the service would when it ends.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from tests.loopback import JsonServer, error, not_found

PARENT = r"/v1/(projects/[^/]+/locations/[^/]+)"
LABEL_TERM = re.compile(r'labels\.([a-z0-9_-]+)\s*=\s*"?([^"\s]*)"?')


@dataclass
class Call:
    method: str
    path: str
    query: dict
    body: dict


def _time(at: dt.datetime) -> str:
    return at.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class VertexApiServer(JsonServer):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.jobs: dict[str, dict] = {}  # resource name -> PipelineJob (REST JSON)

    def answer(self, method: str, target: str, body: dict | None) -> tuple[int, dict]:
        url = urlsplit(target)
        query = parse_qs(url.query)
        self.calls.append(Call(method, url.path, query, body or {}))
        if m := re.fullmatch(PARENT + r"/pipelineJobs", url.path):
            if method == "POST":
                return self._create(m.group(1), query, body or {})
            return self._list(m.group(1), query)
        if method == "GET" and (m := re.fullmatch(r"/v1/(.+/pipelineJobs/[^/]+)", url.path)):
            job = self.jobs.get(m.group(1))
            return (200, job) if job else not_found(f"PipelineJob {m.group(1)} not found")
        if method == "POST" and (m := re.fullmatch(PARENT + r"/schedules", url.path)):
            return 200, {**(body or {}), "name": f"{m.group(1)}/schedules/4242", "state": 1}
        return not_found(f"no route {method} {url.path}")

    def _create(self, parent: str, query: dict, body: dict) -> tuple[int, dict]:
        job_id = query.get("pipelineJobId", [f"job-{len(self.jobs) + 1}"])[0]
        name = f"{parent}/pipelineJobs/{job_id}"
        created = dt.datetime.now(dt.timezone.utc) + dt.timedelta(microseconds=len(self.jobs))
        self.jobs[name] = {
            **body,
            "name": name,
            "state": "PIPELINE_STATE_PENDING",
            "createTime": _time(created),
        }
        return 200, self.jobs[name]

    def _list(self, parent: str, query: dict) -> tuple[int, dict]:
        text = query.get("filter", [""])[0]
        terms = [t.strip() for t in re.split(r"\s+AND\s+", text) if t.strip()]
        wanted = {}
        for term in terms:
            if not (m := LABEL_TERM.fullmatch(term)):
                return error(400, "INVALID_ARGUMENT", f"the stand-in filters on labels only, got {term!r}")
            wanted[m.group(1)] = m.group(2)
        found = [
            job
            for name, job in self.jobs.items()
            if name.startswith(parent + "/")
            and all(job.get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        found.sort(key=lambda job: job["createTime"], reverse=True)
        return 200, {"pipelineJobs": found} if found else {}

    def finish(self, name: str, state: str, seconds: float, tasks: dict[str, dict[str, dict]] | None = None):
        """End the job `name` in `state` after `seconds`; tasks: task -> output -> artifact metadata."""
        job = self.jobs[name]
        start = dt.datetime.fromisoformat(job["createTime"].replace("Z", "+00:00"))
        job.update(
            state=f"PIPELINE_STATE_{state}",
            startTime=_time(start),
            endTime=_time(start + dt.timedelta(seconds=seconds)),
        )
        job["jobDetail"] = {
            "taskDetails": [
                {
                    "taskName": task,
                    "state": state,
                    "outputs": {out: {"artifacts": [{"metadata": meta}]} for out, meta in outputs.items()},
                }
                for task, outputs in (tasks or {}).items()
            ]
        }

    def posts(self, suffix: str) -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and c.path.endswith(suffix)]
