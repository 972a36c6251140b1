"""Running the node's storage commands (lvcreate, tgtadm, ...) without blocking the event loop.

Public: :class:`CommandRunner`, :class:`CommandResult`, :class:`CommandFailed`, :data:`Runner`.

Every external command goes through one ``Runner`` so that unit tests can replace it with a
recording player (``tests/block/recordings``) and assert on the exact argv, and so that every
command is logged once with its duration and, on failure, its stderr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Protocol

from blockd.errors import BackendFailure

log = logging.getLogger("blockd.commands")

COMMAND_TIMEOUT_S = 120.0  # lvremove of a big thin LV or tgt-admin --update can take seconds
# LVM refuses to run with unexpected locales' number formats and warns about leaked descriptors.
COMMAND_ENV = {"LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"}


@dataclasses.dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandFailed(BackendFailure):
    """A command exited non-zero; the message carries the argv and the tail of stderr."""

    def __init__(self, result: CommandResult):
        self.result = result
        tail = result.stderr.strip().splitlines()[-3:]
        super().__init__(f"{' '.join(result.argv)} exited {result.returncode}: {' | '.join(tail)}")


class Runner(Protocol):
    async def run(self, *argv: str, check: bool = True) -> CommandResult: ...


class CommandRunner:
    """Runs argv with ``asyncio.create_subprocess_exec`` (no shell), bounded by a timeout."""

    def __init__(self, timeout_s: float = COMMAND_TIMEOUT_S):
        self.timeout_s = timeout_s

    async def run(self, *argv: str, check: bool = True) -> CommandResult:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **COMMAND_ENV},
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            command = " ".join(argv)
            raise BackendFailure(f"{command} timed out after {self.timeout_s:.0f} s") from None
        result = CommandResult(tuple(argv), proc.returncode or 0, out.decode(), err.decode())
        elapsed_s = time.monotonic() - started
        log.debug("%s -> %d in %.3f s", " ".join(argv), result.returncode, elapsed_s)
        if check and result.returncode != 0:
            log.warning("command failed: %s: %s", " ".join(argv), result.stderr.strip()[-500:])
            raise CommandFailed(result)
        return result
