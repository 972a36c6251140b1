"""Images in formats other than raw (qcow2, vmdk, vdi, vhd, vhdx): inspected and converted with
``qemu-img``, as Cinder's ``image_utils.fetch_to_raw`` does.

Public: :data:`DISK_FORMATS`, :class:`ImageInfo`, :func:`inspect_image`, :func:`convert_to_raw`,
:func:`remove_leftovers`, :data:`TMP_PREFIX`.

The image is downloaded to a file first (:mod:`blockd.image_import`), because these formats are not
streamable: their tables may sit at the end. ``qemu-img info`` then has to agree with the format
the caller declared (a "qcow2" that is really raw, or the reverse, is refused: probing a raw image
as qcow2 is how a tenant reads host files), and an image is refused when it refers to any other
file (a backing file, a qcow2 external data file, a vmdk extent elsewhere: each would make
qemu-img read a host path named by the tenant), is encrypted, or is larger than the volume.
``qemu-img`` runs under ``prlimit`` (address space and CPU time), as Cinder runs it, since a crafted
header can make it allocate or loop. The conversion writes into the volume's device or file with
``-n --target-is-zero``: the volume is new, so zeroed, and zero runs are skipped (thin stays thin).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from blockd.errors import BackendFailure, InvalidRequest
from blockd.tasks import Task
from shoal.units import GiB

log = logging.getLogger("blockd.image_convert")

#: Glance's disk_format -> qemu-img's format name (Glance's "vhd" is qemu's "vpc").
DISK_FORMATS = {"qcow2": "qcow2", "vmdk": "vmdk", "vdi": "vdi", "vhd": "vpc", "vhdx": "vhdx"}
#: vmdk subformats whose data is inside the one file (Cinder's default vmdk_allowed_types).
VMDK_CREATE_TYPES = ("monolithicSparse", "streamOptimized")
TMP_PREFIX = ".tmp-image-"  # the reflink backend removes ".tmp-*" at start as well
INFO_ADDRESS_SPACE_BYTES = 1 * GiB  # Cinder's QEMU_IMG_LIMITS: 1 GiB, 30 s of CPU for `info`
INFO_CPU_S = 30
INFO_TIMEOUT_S = 60.0
CONVERT_ADDRESS_SPACE_BYTES = 2 * GiB  # convert's buffers and caches; bounded against a bomb
CONVERT_TIMEOUT_S = 6 * 3600.0  # a few hundred GiB on slow disks; progress shows it is alive
_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


@dataclass(frozen=True)
class ImageInfo:
    format: str  # qemu-img's name
    virtual_size_bytes: int


def _prlimit(address_space_bytes: int, cpu_s: int | None = None) -> list[str]:
    argv = ["prlimit", f"--as={address_space_bytes}"]
    if cpu_s is not None:
        argv.append(f"--cpu={cpu_s}")
    return [*argv, "--"]


async def _run(argv: list[str], timeout_s: float) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out, err


def _refusal(info: dict, path: Path) -> str | None:
    """Why the image must not be converted, or None."""
    if info.get("backing-filename") or info.get("full-backing-filename"):
        return f"the image has a backing file ({info.get('backing-filename')!r})"
    if info.get("encrypted"):
        return "the image is encrypted"
    specific = (info.get("format-specific") or {}).get("data") or {}
    if specific.get("data-file"):
        return f"the image has an external data file ({specific['data-file']!r})"
    if info.get("format") == "vmdk":
        create_type = specific.get("create-type")
        if create_type not in VMDK_CREATE_TYPES:
            return f"vmdk create-type {create_type!r} is not one of {', '.join(VMDK_CREATE_TYPES)}"
        for extent in specific.get("extents", []):
            if Path(extent.get("filename", "")).name != path.name:
                return f"the vmdk has an extent in another file ({extent.get('filename')!r})"
    return None


async def inspect_image(path: Path, disk_format: str, volume_size_bytes: int) -> ImageInfo:
    """The image's format and virtual size, checked (InvalidRequest says why it is refused)."""
    argv = [*_prlimit(INFO_ADDRESS_SPACE_BYTES, INFO_CPU_S),
            "qemu-img", "info", "--output=json", str(path)]  # fmt: skip
    try:
        rc, out, err = await _run(argv, INFO_TIMEOUT_S)
    except TimeoutError:
        raise InvalidRequest(f"qemu-img info took over {INFO_TIMEOUT_S:.0f} s") from None
    if rc != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise InvalidRequest(f"the image cannot be read by qemu-img info: {tail[0]}")
    try:
        info = json.loads(out)
    except ValueError:
        raise BackendFailure("qemu-img info did not print JSON") from None
    expected = DISK_FORMATS[disk_format]
    if info.get("format") != expected:
        raise InvalidRequest(
            f"the image was declared {disk_format} but its content is {info.get('format')}"
        )
    reason = _refusal(info, path)
    if reason:
        raise InvalidRequest(f"unsafe image refused: {reason}")
    size = int(info.get("virtual-size") or 0)
    if size > volume_size_bytes:
        raise InvalidRequest(
            f"the image's virtual size ({size} bytes) is larger than the volume "
            f"({volume_size_bytes} bytes)"
        )
    return ImageInfo(expected, size)


async def convert_to_raw(source: Path, image: ImageInfo, device: str, task: Task) -> None:
    """``qemu-img convert`` into the (zeroed, new) volume; the task follows its ``-p`` output."""
    task.phase, task.done_bytes, task.total_bytes = "converting", 0, image.virtual_size_bytes
    argv = [*_prlimit(CONVERT_ADDRESS_SPACE_BYTES),
            "qemu-img", "convert", "-p", "-f", image.format, "-O", "raw",
            "-n", "--target-is-zero", str(source), device]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
    )

    async def follow_progress() -> None:
        assert proc.stdout is not None
        while output := await proc.stdout.read(4096):
            found = _PROGRESS.findall(output)
            if found:
                percent = float(found[-1])
                task.done_bytes = int(image.virtual_size_bytes * percent / 100)

    try:
        async with asyncio.timeout(CONVERT_TIMEOUT_S):
            assert proc.stderr is not None
            _, err = await asyncio.gather(follow_progress(), proc.stderr.read())
            rc = await proc.wait()
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    if rc != 0:
        tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
        raise BackendFailure(f"qemu-img convert exited {rc}: {tail}")
    task.done_bytes = image.virtual_size_bytes


def remove_leftovers(directory: Path) -> None:
    """Remove downloads left by imports that a stop or crash interrupted (called at start)."""
    if not directory.is_dir():
        return
    for leftover in directory.glob(TMP_PREFIX + "*"):
        log.warning("removing %s left by an interrupted image import", leftover)
        leftover.unlink(missing_ok=True)
