"""Write a file so that readers see the old content or the new one, never a mix.

Public: :func:`write_atomic`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(path: str | Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to a temp file next to ``path``, fsync it, rename it over, fsync the dir.

    A crash at any point leaves either the previous file or the complete new one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
