"""iSCSI targets: how a volume's device reaches an initiator, with CHAP and a per-initiator ACL.

Public: :class:`Target` (the protocol), :func:`make_target`.

One iSCSI target per volume, named ``<target_iqn_prefix><volume name>`` as Cinder names it. The
target keeps its own saved configuration (tgt: one file per volume in tgt's config syntax; LIO:
rtslib's saveconfig.json), and :meth:`Target.start` re-creates the exports from it, so exports
survive a restart of blockd and of the node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from blockd.model import Chap

if TYPE_CHECKING:
    from blockd.commands import Runner
    from blockd.config import BlockdConfig


class Target(Protocol):
    #: The LUN a volume appears at (tgt: 1, LUN 0 is its controller; LIO: 0).
    lun: int

    async def start(self) -> None:
        """Re-create saved exports that the running target lacks (after a reboot)."""

    async def export(self, name: str, device: str, initiator: str, chap: Chap) -> str:
        """Allow ``initiator`` (with ``chap``) to reach ``device``; returns the target IQN."""

    async def unexport(self, name: str, initiator: str) -> None:
        """Remove one initiator; the target goes away with its last initiator."""

    async def remove(self, name: str) -> None:
        """Remove the volume's target and every initiator (idempotent)."""

    async def initiators(self, name: str) -> list[str]:
        """The initiators the volume is exported to (from the target's own state)."""

    async def resized(self, name: str, device: str) -> None:
        """Make the target report the device's new size (after an extend)."""

    async def close(self) -> None: ...


def make_target(config: BlockdConfig, runner: Runner) -> Target:
    if config.target == "tgt":
        from blockd.targets.tgt import TgtTarget

        return TgtTarget(
            runner, config.tgt_conf_dir, config.target_iqn_prefix, config.tgt_control_port
        )
    from blockd.targets.lio import LioTarget

    return LioTarget(config.target_iqn_prefix, config.target_portals, config.lio_save_file)
