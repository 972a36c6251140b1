"""Long operations (an image download into a volume) as tasks whose progress the API reports.

Public: :class:`TaskRegistry`, :class:`Task`.

A task lives in memory only: it describes work in flight on this process, not storage state (the
volume itself is the record). A restart forgets finished and interrupted tasks; an interrupted
import leaves a volume whose content is incomplete, which the caller sees as a task that vanished
(404) and treats as failed. Finished tasks are kept for ``TASKS_FINISHED_MAX`` entries, so polling
after completion works and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from blockd.errors import BlockdError, Conflict, NotFound

log = logging.getLogger("blockd.tasks")

TASKS_FINISHED_MAX = 1000  # enough for a poller to see the end of every recent task
TASKS_RUNNING_MAX = 16  # each holds a connection and a volume busy; more would thrash the pool


@dataclasses.dataclass
class Task:
    id: str
    kind: str
    volume_id: str
    state: str = "running"  # running | done | failed
    done_bytes: int = 0
    total_bytes: int | None = None
    phase: str | None = None  # a task of several steps: where it is (import: downloading...)
    error: str | None = None
    error_status: int | None = None  # the HTTP status the error would have had: 400 = refused input
    started_at: float = dataclasses.field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def progress(self) -> float | None:
        if self.state == "done":
            return 1.0
        if not self.total_bytes:
            return None
        return min(1.0, self.done_bytes / self.total_bytes)

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "volume_id": self.volume_id,
            "state": self.state,
            "progress": self.progress,
            "done_bytes": self.done_bytes,
            "total_bytes": self.total_bytes,
            "phase": self.phase,
            "error": self.error,
            "error_status": self.error_status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: collections.OrderedDict[str, Task] = collections.OrderedDict()
        self._running: set[asyncio.Task] = set()

    def running_count(self) -> int:
        return sum(1 for t in self._tasks.values() if t.state == "running")

    def check_room(self) -> None:
        """Conflict when no task can start now (checked before a request changes anything)."""
        if self.running_count() >= TASKS_RUNNING_MAX:
            raise Conflict(f"{TASKS_RUNNING_MAX} tasks are running already; retry later")

    def start(self, kind: str, volume_id: str, work: Callable[[Task], Awaitable[None]]) -> Task:
        self.check_room()
        task = Task(str(uuid.uuid4()), kind, volume_id)
        self._tasks[task.id] = task
        runner = asyncio.get_running_loop().create_task(self._run(task, work))
        self._running.add(runner)
        runner.add_done_callback(self._running.discard)
        return task

    async def _run(self, task: Task, work: Callable[[Task], Awaitable[None]]) -> None:
        try:
            await work(task)
            task.state = "done"
        except asyncio.CancelledError:
            task.state, task.error = "failed", "cancelled (blockd is stopping)"
            raise
        except BlockdError as exc:
            task.state, task.error, task.error_status = "failed", str(exc), exc.status
        except Exception as exc:
            log.exception("task %s (%s of volume %s) failed", task.id, task.kind, task.volume_id)
            task.state, task.error = "failed", f"internal error: {type(exc).__name__}"
        finally:
            task.finished_at = time.time()
            self._trim()

    def _trim(self) -> None:
        finished = [t.id for t in self._tasks.values() if t.state != "running"]
        for task_id in finished[: max(0, len(finished) - TASKS_FINISHED_MAX)]:
            del self._tasks[task_id]

    def get(self, task_id: str) -> Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise NotFound(f"task {task_id} not found") from None

    def list(self) -> list[Task]:
        return list(self._tasks.values())

    async def close(self) -> None:
        for runner in list(self._running):
            runner.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
