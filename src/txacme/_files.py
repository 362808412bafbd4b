"""
Files that survive crashes: written whole or not at all, durably, readable
by their owner only; and the temporary files a writer killed mid-write
leaves behind.  The store's files (and its account key) are written so.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress

__all__ = [
    "create_exclusively",
    "fsync_directory",
    "is_stale_temporary",
    "write_atomically",
    "write_temporary",
]

TEMPORARY_PREFIX = ".txacme-"
TEMPORARY_SUFFIX = ".tmp"
#: A temporary file this old is what a writer killed mid-write left behind.
STALE_TEMPORARY_SECONDS = 3600.0


def fsync_directory(directory: str) -> None:
    """Make a rename or link in ``directory`` durable."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover (platforms without directory fds)
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover (file systems refusing directory fsync)
        pass
    finally:
        os.close(descriptor)


def write_temporary(directory: str, content: bytes) -> str:
    """
    Write ``content`` to a new temporary file in ``directory``, created
    readable by its owner only, and flush it to disk.

    :returns: The temporary file's path.
    """
    descriptor, temporary = tempfile.mkstemp(
        prefix=TEMPORARY_PREFIX, suffix=TEMPORARY_SUFFIX, dir=directory
    )
    try:
        with os.fdopen(descriptor, "wb") as output:
            output.write(content)
            output.flush()
            os.fsync(output.fileno())
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    return temporary


def write_atomically(directory: str, name: str, content: bytes) -> None:
    """
    Replace ``directory/name`` with ``content`` so that a reader, or a
    process started after a crash, sees the old file or the new one, whole:
    write a temporary file in the same directory (mode 0600), flush and
    ``fsync`` it, ``os.replace`` it onto the name, ``fsync`` the directory.

    :param directory: The directory.
    :param name: The file's name in it.
    :param content: The new content.
    """
    temporary = write_temporary(directory, content)
    try:
        os.replace(temporary, os.path.join(directory, name))
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_directory(directory)


def create_exclusively(directory: str, name: str, content: bytes) -> bool:
    """
    Create ``directory/name`` with ``content`` (mode 0600) unless it exists,
    atomically: the file appears whole or not at all, and an existing file
    is never replaced (the temporary file is hard-linked to the name).

    :returns: Whether the file was created.
    """
    temporary = write_temporary(directory, content)
    target = os.path.join(directory, name)
    try:
        try:
            os.link(temporary, target)
        except FileExistsError:
            return False
        except OSError:
            # File systems without hard links: a small window in which
            # another creator's file could be replaced by an equally
            # complete one.
            if os.path.lexists(target):
                return False
            os.replace(temporary, target)
            temporary = ""
    finally:
        if temporary:
            with suppress(OSError):
                os.unlink(temporary)
    fsync_directory(directory)
    return True


def is_stale_temporary(entry: os.DirEntry[str], now: float) -> bool:
    if not (
        entry.name.startswith(TEMPORARY_PREFIX)
        and entry.name.endswith(TEMPORARY_SUFFIX)
    ):
        return False
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > (
            STALE_TEMPORARY_SECONDS
        )
    except OSError:
        return False
