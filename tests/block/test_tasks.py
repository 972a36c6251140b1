"""TaskRegistry: a task reports progress, ends done or failed with a message meant for the
caller (typed errors verbatim, anything else without internals), and memory stays bounded."""

from __future__ import annotations

import asyncio

import pytest

from blockd import tasks
from blockd.errors import Conflict, InvalidRequest, NotFound


def run(coroutine):
    return asyncio.run(coroutine)


def test_progress_then_done():
    async def scenario():
        registry = tasks.TaskRegistry()
        step = asyncio.Event()

        async def work(task):
            task.total_bytes = 100
            task.done_bytes = 25
            await step.wait()
            task.done_bytes = 100

        task = registry.start("image-import", "v", work)
        await asyncio.sleep(0)
        assert (task.state, task.progress) == ("running", 0.25)
        step.set()
        await asyncio.sleep(0.01)
        assert (task.state, task.progress) == ("done", 1.0)
        assert registry.get(task.id).as_dict()["finished_at"] is not None

    run(scenario())


def test_failures_say_why_without_internals():
    async def scenario():
        registry = tasks.TaskRegistry()

        async def typed(task):
            raise InvalidRequest("the image is larger than the volume")

        async def bug(task):
            raise KeyError("secret internal detail")

        first, second = registry.start("x", "v", typed), registry.start("x", "v", bug)
        await asyncio.sleep(0.01)
        assert (first.state, first.error) == ("failed", "the image is larger than the volume")
        assert second.state == "failed" and "secret" not in second.error
        with pytest.raises(NotFound):
            registry.get("no-such-task")

    run(scenario())


def test_running_and_finished_tasks_are_bounded(monkeypatch):
    monkeypatch.setattr(tasks, "TASKS_FINISHED_MAX", 3)
    monkeypatch.setattr(tasks, "TASKS_RUNNING_MAX", 2)

    async def scenario():
        registry = tasks.TaskRegistry()
        gate = asyncio.Event()

        async def slow(task):
            await gate.wait()

        registry.start("x", "v", slow)
        registry.start("x", "v", slow)
        with pytest.raises(Conflict):
            registry.start("x", "v", slow)
        gate.set()
        await asyncio.sleep(0.01)
        for _ in range(5):
            registry.start("x", "v", slow)
            await asyncio.sleep(0.01)
        assert len(registry.list()) == 3
        await registry.close()

    run(scenario())
