"""The tgt target (user space, ``tgtd``), driven with ``tgtadm``.

Public: :class:`TgtTarget`, :func:`parse_show`, :func:`render_conf`, :func:`parse_conf`.

One tgt target per volume with the data at LUN 1 (LUN 0 is tgt's controller), CHAP through an
``incominguser`` account, and an ACL of initiator names (``initiator-name``: a login from any other
IQN is refused even with the right secret). Live changes go through ``tgtadm`` so that adding or
removing one initiator never disturbs the others' sessions. The saved configuration is one file
per volume in ``tgt_conf_dir``, in tgt-admin's syntax (an operator can also load it with
``tgt-admin -c FILE -e``); :meth:`TgtTarget.start` re-creates from those files any target that the
running tgtd lacks, so exports survive a restart of tgtd or of the node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
from pathlib import Path

from blockd.commands import CommandFailed, Runner
from blockd.errors import BackendFailure
from blockd.model import Chap

log = logging.getLogger("blockd.tgt")

DATA_LUN = 1
TARGET_DELETE_ATTEMPTS = 5  # a forced delete can fail while a connection is being torn down
TARGET_DELETE_RETRY_S = 0.2
CONF_SUFFIX = ".conf"
_TARGET_RE = re.compile(r"^Target (\d+): (\S+)$")


@dataclasses.dataclass
class TgtState:
    """What tgtd reports about one target."""

    tid: int
    iqn: str
    backing_store: str | None = None
    accounts: list[str] = dataclasses.field(default_factory=list)
    initiators: list[str] = dataclasses.field(default_factory=list)
    #: logged-in sessions: (session id, initiator IQN, connection ids)
    sessions: list[tuple[int, str, list[int]]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class TgtConf:
    """One volume's saved export: the content of ``<tgt_conf_dir>/<volume name>.conf``."""

    iqn: str
    backing_store: str
    chap: Chap
    initiators: tuple[str, ...]


def parse_show(stdout: str) -> dict[str, TgtState]:
    """Targets by IQN from ``tgtadm --op show --mode target`` (format of tgt 1.0.85)."""
    targets: dict[str, TgtState] = {}
    current: TgtState | None = None
    section = ""
    for raw in stdout.splitlines():
        line = raw.strip()
        match = _TARGET_RE.match(raw)
        if match:
            current = TgtState(int(match.group(1)), match.group(2))
            targets[current.iqn] = current
            section = ""
        elif current is None or not line:
            continue
        elif raw.startswith("    ") and not raw.startswith("     ") and line.endswith(":"):
            section = line[:-1]
        elif section == "I_T nexus information":
            _parse_nexus_line(current, line)
        elif line.startswith("Backing store path:") and section == "LUN information":
            path = line.split(":", 1)[1].strip()
            if path != "None":
                current.backing_store = path
        elif section == "Account information" and raw.startswith("        "):
            current.accounts.append(line.split()[0])
        elif section == "ACL information" and raw.startswith("        "):
            current.initiators.append(line)
    return targets


def _parse_nexus_line(state: TgtState, line: str) -> None:
    """One line of an I_T nexus block: ``I_T nexus: <sid>``, ``Initiator: <iqn> alias: ...``,
    ``Connection: <cid>`` (and ``IP Address:``, ignored)."""
    key, _, value = line.partition(":")
    if key == "I_T nexus":
        state.sessions.append((int(value), "", []))
    elif key == "Initiator" and state.sessions:
        sid, _, cids = state.sessions[-1]
        state.sessions[-1] = (sid, value.split()[0], cids)
    elif key == "Connection" and state.sessions:
        state.sessions[-1][2].append(int(value))


def render_conf(conf: TgtConf) -> str:
    lines = [
        "# Written by shoal blockd; tgt-admin syntax. Edit through the blockd API, not by hand.",
        f"<target {conf.iqn}>",
        f"    backing-store {conf.backing_store}",
        "    driver iscsi",
        f"    incominguser {conf.chap.username} {conf.chap.password}",
        *(f"    initiator-name {initiator}" for initiator in conf.initiators),
        "    write-cache on",
        "</target>",
    ]
    return "\n".join(lines) + "\n"


def parse_conf(text: str) -> TgtConf:
    iqn = backing = None
    chap = None
    initiators = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "<target" and len(words) == 2:
            iqn = words[1].rstrip(">")
        elif words[0] == "backing-store" and len(words) == 2:
            backing = words[1]
        elif words[0] == "incominguser" and len(words) == 3:
            chap = Chap(words[1], words[2])
        elif words[0] == "initiator-name" and len(words) == 2:
            initiators.append(words[1])
    if not (iqn and backing and chap):
        raise ValueError("not a blockd tgt config (needs <target>, backing-store, incominguser)")
    return TgtConf(iqn, backing, chap, tuple(initiators))


class TgtTarget:
    lun = DATA_LUN

    def __init__(self, runner: Runner, conf_dir: Path, iqn_prefix: str, control_port: int = 0):
        self.runner = runner
        self.conf_dir = Path(conf_dir)
        self.iqn_prefix = iqn_prefix
        self.control_port = control_port
        self._lock = asyncio.Lock()  # tids are chosen from tgtd's list: one change at a time

    def _iqn(self, name: str) -> str:
        return self.iqn_prefix + name

    def _conf_path(self, name: str) -> Path:
        return self.conf_dir / (name + CONF_SUFFIX)

    async def _tgtadm(self, *args: str, check: bool = True):
        control = ("-C", str(self.control_port)) if self.control_port else ()
        return await self.runner.run("tgtadm", *control, "--lld", "iscsi", *args, check=check)

    async def _show(self) -> dict[str, TgtState]:
        return parse_show((await self._tgtadm("--op", "show", "--mode", "target")).stdout)

    # --- saved configuration ----------------------------------------------------------------
    def _read_conf(self, name: str) -> TgtConf | None:
        try:
            return parse_conf(self._conf_path(name).read_text())
        except FileNotFoundError:
            return None

    def _write_conf(self, name: str, conf: TgtConf) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._conf_path(name)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds CHAP secrets
        with os.fdopen(fd, "w") as f:
            f.write(render_conf(conf))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # --- live changes -----------------------------------------------------------------------
    async def _create_live(self, conf: TgtConf, targets: dict[str, TgtState]) -> TgtState:
        tid = max((t.tid for t in targets.values()), default=0) + 1
        tid_s = str(tid)
        await self._tgtadm("--op", "new", "--mode", "target", "--tid", tid_s, "-T", conf.iqn)
        try:
            await self._tgtadm(
                "--op", "new", "--mode", "logicalunit", "--tid", tid_s, "--lun", str(DATA_LUN),
                "-b", conf.backing_store,
            )  # fmt: skip
            await self._ensure_account(conf.chap)
            await self._tgtadm(
                "--op", "bind", "--mode", "account", "--tid", tid_s, "--user", conf.chap.username
            )
        except BaseException:
            await self._delete_live(TgtState(tid, conf.iqn), conf.chap.username)
            raise
        return TgtState(tid, conf.iqn, conf.backing_store, [conf.chap.username], [])

    async def _ensure_account(self, chap: Chap) -> None:
        result = await self._tgtadm(
            "--op", "new", "--mode", "account", "--user", chap.username,
            "--password", chap.password, check=False,
        )  # fmt: skip
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise CommandFailed(result)

    async def _delete_live(self, state: TgtState, username: str | None) -> None:
        """Delete the live target, and check that tgtd no longer shows it.

        The forced delete's result used to be ignored: a target that outlived it (tgtd busy
        tearing down a connection) stayed exported while the unexport answered 204. Now the
        delete is checked against what tgtd shows, retried up to ``TARGET_DELETE_ATTEMPTS``
        times, and a target that stays is an error (5xx), never a false success.
        """
        tid = str(state.tid)
        for attempt in range(1, TARGET_DELETE_ATTEMPTS + 1):
            result = await self._tgtadm(
                "--op", "delete", "--mode", "target", "--tid", tid, "--force", check=False
            )  # fmt: skip
            live = (await self._show()).get(state.iqn)
            if live is None or live.tid != state.tid:
                break
            why = result.stderr.strip() or f"exit {result.returncode}"
            log.warning(
                "tgtd kept target %s after delete (attempt %d): %s", state.iqn, attempt, why
            )
            if attempt == TARGET_DELETE_ATTEMPTS:
                raise BackendFailure(f"tgtd still shows target {state.iqn} after delete: {why}")
            await asyncio.sleep(TARGET_DELETE_RETRY_S)
        if username:
            await self._tgtadm(
                "--op", "delete", "--mode", "account", "--user", username, check=False
            )  # fmt: skip

    async def _bind(self, state: TgtState, initiator: str, bind: bool) -> None:
        op = "bind" if bind else "unbind"
        await self._tgtadm(
            "--op", op, "--mode", "target", "--tid", str(state.tid), "--initiator-name", initiator
        )
        if not bind:
            await self._disconnect(state, initiator)

    async def _disconnect(self, state: TgtState, initiator: str) -> None:
        """Close the initiator's live connections: tgt checks its ACL only at login, and an
        unexported initiator must lose access now, not at its next login."""
        for sid, who, cids in state.sessions:
            if who != initiator:
                continue
            for cid in cids:
                await self._tgtadm(
                    "--op", "delete", "--mode", "conn", "--tid", str(state.tid),
                    "--sid", str(sid), "--cid", str(cid), check=False,
                )  # fmt: skip

    async def _apply(self, conf: TgtConf, targets: dict[str, TgtState]) -> None:
        """Make tgtd's state for one target equal the saved ``conf``."""
        state = targets.get(conf.iqn)
        if state is None:
            state = await self._create_live(conf, targets)
            targets[conf.iqn] = state
        for initiator in conf.initiators:
            if initiator not in state.initiators:
                await self._bind(state, initiator, True)
        for initiator in state.initiators:
            if initiator not in conf.initiators:
                await self._bind(state, initiator, False)

    # --- Target protocol --------------------------------------------------------------------
    async def start(self) -> None:
        async with self._lock:
            try:
                targets = await self._show()
            except CommandFailed as exc:
                raise BackendFailure(f"tgtd is not reachable (is it running?): {exc}") from None
            if not self.conf_dir.is_dir():
                return
            for path in sorted(self.conf_dir.glob("*" + CONF_SUFFIX)):
                try:
                    conf = parse_conf(path.read_text())
                except ValueError as exc:
                    log.error("ignoring %s: %s", path, exc)
                    continue
                if conf.iqn not in targets:
                    log.info("re-creating tgt target %s from %s", conf.iqn, path)
                await self._apply(conf, targets)

    async def export(self, name: str, device: str, initiator: str, chap: Chap) -> str:
        iqn = self._iqn(name)
        async with self._lock:
            saved = self._read_conf(name)
            initiators = saved.initiators if saved else ()
            if initiator not in initiators:
                initiators = (*initiators, initiator)
            conf = TgtConf(iqn, device, chap, initiators)
            await self._apply(conf, await self._show())
            await asyncio.to_thread(self._write_conf, name, conf)
        return iqn

    async def unexport(self, name: str, initiator: str) -> None:
        async with self._lock:
            saved = self._read_conf(name)
            if saved is None or initiator not in saved.initiators:
                return
            remaining = tuple(i for i in saved.initiators if i != initiator)
            if not remaining:
                await self._remove_locked(name)
                return
            conf = dataclasses.replace(saved, initiators=remaining)
            await self._apply(conf, await self._show())
            await asyncio.to_thread(self._write_conf, name, conf)

    async def remove(self, name: str) -> None:
        async with self._lock:
            await self._remove_locked(name)

    async def _remove_locked(self, name: str) -> None:
        saved = self._read_conf(name)
        state = (await self._show()).get(self._iqn(name))
        if state is not None:
            await self._delete_live(state, saved.chap.username if saved else None)
        self._conf_path(name).unlink(missing_ok=True)

    async def initiators(self, name: str) -> list[str]:
        state = (await self._show()).get(self._iqn(name))
        return list(state.initiators) if state else []

    async def resized(self, name: str, device: str) -> None:
        """tgt reads the size when a LUN is created: re-create LUN 1 (sessions stay logged in)."""
        async with self._lock:
            state = (await self._show()).get(self._iqn(name))
            if state is None:
                return
            tid, lun = str(state.tid), str(DATA_LUN)
            await self._tgtadm(
                "--op", "delete", "--mode", "logicalunit", "--tid", tid, "--lun", lun
            )  # fmt: skip
            await self._tgtadm(
                "--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", lun, "-b", device
            )

    async def close(self) -> None:
        return None
