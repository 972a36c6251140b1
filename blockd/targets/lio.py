"""The LIO target (the kernel's iSCSI target, production), driven through rtslib-fb.

Public: :class:`LioTarget`.

Per volume, as Cinder's ``cinder-rtstool`` builds it: a block backstore (fileio for a file), a
target ``<prefix><volume name>``, TPG 1 with ``authentication=1`` and ``generate_node_acls=0``
(no demo mode: only listed initiators), the volume at LUN 0, one network portal per configured
``ip:port``; per initiator a NodeACL with the volume's CHAP pair and mapped LUN 0. After every
change the whole LIO configuration is saved with ``save_to_file``; :meth:`LioTarget.start`
restores it when the kernel has lost it (a reboot), so exports survive restarts.

rtslib writes to configfs synchronously and is not safe against concurrent changes (Cinder
serialises it with an external lock), so every call runs in one worker thread at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

from blockd.errors import BackendFailure, ConfigurationError
from blockd.model import Chap

log = logging.getLogger("blockd.lio")

DATA_LUN = 0
TPG_TAG = 1


def _split_portal(portal: str) -> tuple[str, int]:
    host, _, port = portal.rpartition(":")
    return host.strip("[]"), int(port)


class LioTarget:
    lun = DATA_LUN

    def __init__(self, iqn_prefix: str, portals: list[str], save_file: Path):
        self.iqn_prefix = iqn_prefix
        self.portals = [_split_portal(p) for p in portals]
        self.save_file = Path(save_file)
        self._lock = threading.Lock()

    # --- plumbing ---------------------------------------------------------------------------
    def _rtslib(self) -> Any:
        try:
            import rtslib_fb
        except ImportError:
            raise ConfigurationError(
                "target = lio needs rtslib-fb (pip install 'shoal[lio]' or python3-rtslib-fb)"
            ) from None
        return rtslib_fb

    async def _call(self, function, *args):
        def locked():
            with self._lock:
                try:
                    return function(*args)
                except Exception as exc:
                    if type(exc).__name__ == "RTSLibError":
                        raise BackendFailure(f"LIO: {exc}") from exc
                    raise

        return await asyncio.to_thread(locked)

    def _find_target(self, root, iqn: str):
        return next((t for t in root.targets if t.wwn == iqn), None)

    def _save(self, root) -> None:
        self.save_file.parent.mkdir(parents=True, exist_ok=True)
        root.save_to_file(str(self.save_file))
        os.chmod(self.save_file, 0o600)  # it holds the CHAP secrets

    # --- Target protocol --------------------------------------------------------------------
    async def start(self) -> None:
        await self._call(self._start_sync)

    def _start_sync(self) -> None:
        rtslib = self._rtslib()
        # RTSRoot() fails unless its preferred dbroot exists (/etc/target in rtslib-fb 2.2,
        # /etc/rtslib-fb-target in Debian's 2.1.75)
        dbroot = getattr(rtslib.RTSRoot, "_preferred_dbroot", "/etc/target")
        Path(dbroot).mkdir(parents=True, exist_ok=True)
        root = rtslib.RTSRoot()
        ours = [t for t in root.targets if t.wwn.startswith(self.iqn_prefix)]
        if ours or not self.save_file.exists():
            return
        log.info("LIO has none of blockd's targets: restoring %s", self.save_file)
        errors = root.restore_from_file(
            str(self.save_file), clear_existing=False, abort_on_error=False
        )
        for error in errors or []:
            log.warning("LIO restore: %s", error)

    async def export(self, name: str, device: str, initiator: str, chap: Chap) -> str:
        return await self._call(self._export_sync, name, device, initiator, chap)

    def _storage_object(self, rtslib, root, name: str, device: str):
        for so in root.storage_objects:
            if so.name == name:
                return so
        if stat.S_ISBLK(os.stat(device).st_mode):
            return rtslib.BlockStorageObject(name, dev=device)
        return rtslib.FileIOStorageObject(name, dev=device, size=os.stat(device).st_size)

    def _create_target(self, rtslib, root, name: str, device: str, iqn: str):
        so = self._storage_object(rtslib, root, name, device)
        target = rtslib.Target(rtslib.FabricModule("iscsi"), iqn, "create")
        tpg = rtslib.TPG(target, TPG_TAG, "create")
        tpg.set_attribute("authentication", "1")
        tpg.set_attribute("generate_node_acls", "0")
        tpg.set_attribute("demo_mode_write_protect", "0")
        rtslib.LUN(tpg, DATA_LUN, so)
        for host, port in self.portals:
            rtslib.NetworkPortal(tpg, host, port, "create")
        tpg.enable = True
        return target

    def _export_sync(self, name: str, device: str, initiator: str, chap: Chap) -> str:
        rtslib = self._rtslib()
        root = rtslib.RTSRoot()
        iqn = self.iqn_prefix + name
        target = self._find_target(root, iqn) or self._create_target(
            rtslib, root, name, device, iqn
        )
        tpg = next(iter(target.tpgs))
        acl = rtslib.NodeACL(tpg, initiator, "any")
        acl.chap_userid = chap.username
        acl.chap_password = chap.password
        if not any(m.mapped_lun == DATA_LUN for m in acl.mapped_luns):
            rtslib.MappedLUN(acl, DATA_LUN, DATA_LUN)
        self._save(root)
        return iqn

    async def unexport(self, name: str, initiator: str) -> None:
        await self._call(self._unexport_sync, name, initiator)

    def _unexport_sync(self, name: str, initiator: str) -> None:
        root = self._rtslib().RTSRoot()
        target = self._find_target(root, self.iqn_prefix + name)
        if target is None:
            return
        tpg = next(iter(target.tpgs))
        for acl in list(tpg.node_acls):
            if acl.node_wwn == initiator:
                acl.delete()
        if not list(tpg.node_acls):
            self._remove_target(root, target, name)
        self._save(root)

    def _remove_target(self, root, target, name: str) -> None:
        target.delete()
        for so in list(root.storage_objects):
            if so.name == name:
                so.delete()

    async def remove(self, name: str) -> None:
        await self._call(self._remove_sync, name)

    def _remove_sync(self, name: str) -> None:
        root = self._rtslib().RTSRoot()
        target = self._find_target(root, self.iqn_prefix + name)
        if target is not None:
            self._remove_target(root, target, name)
            self._save(root)

    async def initiators(self, name: str) -> list[str]:
        return await self._call(self._initiators_sync, name)

    def _initiators_sync(self, name: str) -> list[str]:
        root = self._rtslib().RTSRoot()
        target = self._find_target(root, self.iqn_prefix + name)
        if target is None:
            return []
        return sorted(acl.node_wwn for tpg in target.tpgs for acl in tpg.node_acls)

    async def resized(self, name: str, device: str) -> None:
        """Nothing to do for a block backstore: LIO asks the device for its size each time."""
        return None

    async def close(self) -> None:
        return None
