"""Index jobs: a folder indexed in a background thread, progress readable, one job at a time.

A job that is stopped (the service shuts down) ends between files; the files already written stay,
and indexing the same folder again skips them (indexing is resumable as it always was).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class JobStopped(Exception):
    """Raised inside a job's progress callback when the service stops it."""


class JobConflict(Exception):
    """A job is already running for that collection."""


@dataclass
class Job:
    id: str
    collection: str
    path: str
    state: str = "running"           # running, done, failed, stopped
    files_done: int = 0
    files_total: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    report: dict | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "collection": self.collection, "path": self.path, "state": self.state,
                "files_done": self.files_done, "files_total": self.files_total, "started": self.started,
                "finished": self.finished, "report": self.report, "error": self.error}


class IndexJobs:
    """Starts, tracks and stops index jobs over a :class:`~app.service.SearchService`."""

    def __init__(self, service) -> None:
        self.service = service
        self._jobs: dict[str, Job] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def start(self, path: str, collection: str) -> Job:
        with self._lock:
            running = [j for j in self._jobs.values() if j.state == "running"]
            for j in running:
                if j.collection == collection:
                    raise JobConflict(f"collection {collection!r} is already being indexed by job {j.id} "
                                      f"({j.path}); wait for it (GET /index/{j.id}).")
            if running:
                raise JobConflict(f"job {running[0].id} is indexing {running[0].path} into "
                                  f"{running[0].collection!r}; one index run at a time, wait for it.")
            job = Job(str(next(self._ids)), collection, path)
            self._jobs[job.id] = job
            thread = threading.Thread(target=self._run, args=(job,), name=f"index-{job.id}", daemon=True)
            self._threads[job.id] = thread
        thread.start()
        return job

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

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.state == "running"]

    def stop(self, timeout: float = 30.0) -> None:
        """Ask running jobs to stop between files and wait for them (up to ``timeout`` seconds)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
