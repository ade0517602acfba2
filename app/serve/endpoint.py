"""The endpoint file ``serve.json`` in the data dir: where a running ``rag serve`` listens.

Clients (``rag search``, ``rag status``, ``rag index``, the page) read it and, when the service
answers ``/health``, go through it instead of opening the embedded store (whose lock would refuse
them). The file never holds the API key.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILENAME = "serve.json"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    pid: int

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"


def endpoint_path(data_dir: Path) -> Path:
    return Path(data_dir) / FILENAME


def write_endpoint(data_dir: Path, endpoint: Endpoint) -> Path:
    path = endpoint_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(endpoint)))
    os.replace(tmp, path)
    return path


def remove_endpoint(data_dir: Path, pid: int | None = None) -> None:
    """Remove the file (only if it is this ``pid``'s, when given)."""
    path = endpoint_path(data_dir)
    current = read_endpoint(data_dir)
    if current is not None and pid is not None and current.pid != pid:
        return
    path.unlink(missing_ok=True)


def read_endpoint(data_dir: Path) -> Endpoint | None:
    """The endpoint written by a ``rag serve`` whose process is still alive, else None."""
    path = endpoint_path(data_dir)
    try:
        data = json.loads(path.read_text())
        endpoint = Endpoint(str(data["host"]), int(data["port"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(endpoint.pid):
        log.info("stale %s (process %d is gone)", path, endpoint.pid)
        return None
    return endpoint


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
