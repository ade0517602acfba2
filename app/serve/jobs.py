"""Index jobs: folders indexed in the background, in order, progress readable.

At most one job per collection is queued or running (a second is refused, naming the first). Jobs
for other collections are accepted and wait in a queue (state ``queued``): they run one after
another, because the service indexes one folder at a time (one model, and the embedded store is
written by one indexer at a time).

A job that is stopped (the service shuts down) ends between files; the files already written stay,
and indexing the same folder again skips them (indexing is resumable as it always was). Queued jobs
are stopped before they start.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: states of a job that has not ended (a client waits while the state is one of these)
ACTIVE = ("queued", "running")

class JobStopped(Exception):
    """Raised inside a job's progress callback when the service stops it."""


class JobConflict(Exception):
    """A job is already running for that collection."""


@dataclass
class Job:
    id: str
    collection: str
    path: str
    state: str = "queued"            # queued, running, done, failed, stopped
    files_done: int = 0
    files_total: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None     # when it began running (a queued job waits until then)
    finished: float | None = None
    report: dict | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "collection": self.collection, "path": self.path, "state": self.state,
                "files_done": self.files_done, "files_total": self.files_total, "created": self.created, "started": self.started,
                "finished": self.finished, "report": self.report, "error": self.error}


class IndexJobs:
    """Queues, runs (one at a time, in order), tracks and stops index jobs over a
    :class:`~app.service.SearchService`."""

    def __init__(self, service) -> None:
        self.service = service
        self._jobs: dict[str, Job] = {}
        self._pending: deque[Job] = deque()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def start(self, path: str, collection: str) -> Job:
        """Queue a job for ``collection`` (``running`` at once when nothing else is indexing).

        Raises :class:`JobConflict` while a job for the same collection is queued or running."""
        with self._lock:
            if self._stop.is_set():
                raise JobConflict("the service is shutting down; index the folder again once it is back.")
            for j in self._jobs.values():
                if j.collection == collection and j.state in ACTIVE:
                    raise JobConflict(f"collection {collection!r} is already being indexed by job {j.id} "
                                      f"({j.path}, {j.state}); wait for it (GET /index/{j.id}).")
            busy = any(j.state in ACTIVE for j in self._jobs.values())
            job = Job(str(next(self._ids)), collection, path, state="queued" if busy else "running")
            job.started = None if busy else job.created
            self._jobs[job.id] = job
            self._pending.append(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._drain, name="index-jobs", daemon=True)
                self._worker.start()
        return job

    def _drain(self) -> None:
        """The worker: runs queued jobs in order until none is left."""
        while True:
            with self._lock:
                if not self._pending:
                    self._worker = None
                    return
                job = self._pending.popleft()
                if self._stop.is_set():
                    job.state, job.finished = "stopped", time.time()
                    job.error = "stopped before it started (the service shut down); index the folder again"
                    continue
                job.state, job.started = "running", time.time()
            self._run(job)

    def _run(self, job: Job) -> None:
        def progress(done: int, total: int) -> None:
            job.files_done, job.files_total = done, total
            if self._stop.is_set():
                raise JobStopped(f"stopped after {done} of {total} files; index the folder again to resume")

        try:
            report = self.service.index_folder(job.path, job.collection, on_progress=progress)
            job.report, job.state = report.to_dict(), "done"
        except JobStopped as exc:
            job.state, job.error = "stopped", str(exc)
        except Exception as exc:  # noqa: BLE001 - the job records every failure for its client
            job.state, job.error = "failed", str(exc)
            log.warning("index job %s failed: %s", job.id, exc)
        finally:
            job.finished = time.time()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        return list(self._jobs.values())

    def active(self) -> list[Job]:
        """Jobs queued or running, in order."""
        return [j for j in self._jobs.values() if j.state in ACTIVE]

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the running job to stop between files, stop the queued ones, and wait (up to ``timeout`` s)."""
        self._stop.set()
        with self._lock:
            worker = self._worker
        if worker is not None:
            worker.join(timeout)
