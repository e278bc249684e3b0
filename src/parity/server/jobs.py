"""Training-set jobs of the HTTP API: submitted, run in the background, fetched when done.

A job's state is a folder under ``.parity/jobs/<id>/`` — ``job.json`` (written atomically) and,
when done, ``result.parquet`` — so any worker answers for a job another worker runs. Each worker
runs one job at a time on a thread of its own with a ``Project`` of its own (a training set must
not share the serving connections), and holds at most ``max_queued`` more: past that, a
submission is refused (503) rather than piling up. A job is visible only to the principal that
submitted it; ids are 128 random bits, so they cannot be guessed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from parity.define.access import Principal
from parity.errors import ParityError, one_line

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.runtime.project import Project

log = logging.getLogger("parity.server")
_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


class JobError(Exception):
    """A job that does not exist for this principal, or a full queue."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class TrainingJobs:
    def __init__(self, state_dir: str, project_root: str, *, max_queued: int = 8) -> None:
        self.folder = os.path.join(state_dir, "jobs")
        self.project_root = project_root
        self.max_queued = max_queued
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parity-training-set")
        self._pending = 0
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._project: Project | None = None  # the job thread's own, loaded on its first job
        os.makedirs(self.folder, exist_ok=True)

    def _path(self, job_id: str, name: str = "job.json") -> str:
        return os.path.join(self.folder, job_id, name)

    def _write(self, job_id: str, state: dict[str, Any]) -> None:
        path = self._path(job_id)
        with open(path + ".tmp", "w") as fh:
            json.dump(state, fh)
        os.replace(path + ".tmp", path)

    def submit(self, principal: Principal, spine: pa.Table, features: list[str], timestamp_column: str,
               with_status: bool) -> dict[str, Any]:
        with self._lock:
            if self._pending >= self.max_queued + 1:
                raise JobError(503, "overloaded", f"{self._pending} training sets are queued on this worker; "
                               "retry later")
            self._pending += 1
        job_id = secrets.token_urlsafe(16)
        os.makedirs(os.path.join(self.folder, job_id))
        state: dict[str, Any] = {"id": job_id, "principal": principal.name, "features": features,
                                 "spine_rows": spine.num_rows, "status": "queued", "created": time.time()}
        self._write(job_id, state)
        with self._lock:
            self._queued.add(job_id)
        self._executor.submit(self._run, state, principal, spine, timestamp_column, with_status)
        return _public(state)

    def _run(self, state: dict[str, Any], principal: Principal, spine: pa.Table, timestamp_column: str,
             with_status: bool) -> None:
        import pyarrow.parquet as pq

        job_id = state["id"]
        with self._lock:
            self._queued.discard(job_id)
        try:
            self._write(job_id, {**state, "status": "running", "started": time.time()})
            if self._project is None:
                from parity.runtime.project import Project

                self._project = Project.load(self.project_root)
            table = self._project.training_set(spine, state["features"], timestamp_column=timestamp_column,
                                               with_status=with_status, principal=principal)
            tmp = self._path(job_id, "result.parquet.tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, self._path(job_id, "result.parquet"))
            self._write(job_id, {**state, "status": "done", "rows": table.num_rows, "finished": time.time()})
        except ParityError as exc:
            self._write(job_id, {**state, "status": "failed", "error": one_line(str(exc)), "finished": time.time()})
        except Exception:  # a bug of ours: logged, and said as such (its text could hold data)
            log.exception("training set job %s failed", job_id)
            self._write(job_id, {**state, "status": "failed", "error": "internal error; see the server's log",
                                 "finished": time.time()})
        finally:
            with self._lock:
                self._pending -= 1

    def _state(self, principal: Principal, job_id: str) -> dict[str, Any]:
        if not _ID.match(job_id):
            raise JobError(404, "not_found", f"no training set job {job_id!r}")
        try:
            with open(self._path(job_id)) as fh:
                state: dict[str, Any] = json.load(fh)
        except (OSError, ValueError):
            raise JobError(404, "not_found", f"no training set job {job_id!r}") from None
        if state.get("principal") != principal.name:  # another principal's job does not exist for this one
            raise JobError(404, "not_found", f"no training set job {job_id!r}")
        return state

    def status(self, principal: Principal, job_id: str) -> dict[str, Any]:
        return _public(self._state(principal, job_id))

    def result_path(self, principal: Principal, job_id: str) -> str:
        state = self._state(principal, job_id)
        if state["status"] != "done":
            raise JobError(409, "not_done", f"training set job {job_id} is {state['status']}"
                           + (f": {state['error']}" if state.get("error") else ""))
        return self._path(job_id, "result.parquet")

    def close(self) -> None:
        """Finish the job that runs; the queued ones fail with the reason (the worker stops)."""
        if self._project is not None:
            self._executor.submit(self._project.close)  # on the thread that opened it, after the running job
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            left, self._queued = self._queued, set()
        for job_id in left:
            try:
                with open(self._path(job_id)) as fh:
                    state = json.load(fh)
                self._write(job_id, {**state, "status": "failed", "error": "the server stopped before it ran; submit "
                                     "it again", "finished": time.time()})
            except (OSError, ValueError):
                continue


def _public(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in ("id", "status", "features", "spine_rows", "rows", "error", "created", "finished")
            if k in state}
