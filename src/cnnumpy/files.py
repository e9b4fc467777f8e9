"""Writing files so that nothing a user saved is ever lost or half-written.

``atomic_write`` writes a temporary file in the target's folder, flushes and syncs it, then
renames it over the target: a crash leaves either the old file or the new one. The temporary
file is private (mode 0600) while it is written; just before the rename it gets the mode of
the file it replaces or, for a new file, the mode ``open(path, "w")`` would give (0666 less
the umask). ``check_folder``
tries the same write with a given number of bytes before a long job, so a missing, read-only
or full folder is reported before the work is done rather than after.
"""

from __future__ import annotations

import os
import tempfile


def _check_target(path: str, where: str) -> str:
    """The folder of ``path``, which must not be a folder or a device (never replaced)."""
    if os.path.lexists(path) and not os.path.isfile(path):
        kind = "a folder" if os.path.isdir(path) else "not a regular file"
        raise IsADirectoryError(f"{where}: {path!r} is {kind}; expected a file name")
    return os.path.dirname(os.path.abspath(path))


def check_folder(path: str, data: bytes, where: str) -> None:
    """Write ``data`` to a temporary file beside ``path`` as :func:`atomic_write` would, sync
    it and remove it.

    Raises:
        OSError: naming ``where`` and the folder: missing, read-only or full; or ``path``
            is a folder or a device.
    """
    folder = _check_target(os.fspath(path), where)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
        try:
            _write_synced(fd, data)
        finally:
            os.remove(tmp)
    except OSError as exc:
        raise type(exc)(f"{where}: cannot write to folder {folder!r} "
                        f"({exc.strerror or exc})") from None


def _write_synced(fd: int, data: bytes) -> None:
    """Write ``data`` to the open file ``fd``, flush it to the disk and close it."""
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)  # elsewhere: set and restore it at once
    os.umask(mask)
    return mask


def _final_mode(path: str) -> int:
    """The mode of the file at ``path`` if there is one, else 0666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The new file has the mode of the file it replaces, or 0666 less the umask (as
    ``open(path, "w")`` would give); until the rename it is private (0600).
    """
    folder = _check_target(path, "atomic_write")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        _write_synced(fd, data)
        os.chmod(tmp, _final_mode(path))  # whole and synced: it may now be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
