"""Every file selfsup writes, written so that a failure leaves what was there and says why.

A file is written under a temporary name beside its final one (``.NAME.tmpPID``), flushed to the
disk, then renamed over the old file, so a reader sees the old file or the whole new one. Where
the write fails (a full disk, a quota, the file-size limit, a read-only file system) the temporary
file is removed and :class:`WriteError` names the file, the operating system's error and, for a
full disk, the space needed and the space free: one line, never the library's own wording of it
(``torch.save`` reports a failed write as ``[enforce fail at inline_container.cc] unexpected pos``;
NumPy as ``N requested and M written``). Where the size is known first (checkpoints, encoders,
memory-mapped arrays), a disk without room for it is refused before anything is written.

Memory-mapped outputs (``selfsup embed``'s ``.npy``) have their blocks allocated before they are
mapped (:func:`reserve`): a full disk would otherwise kill the process with SIGBUS on the first
write to a page the file system cannot back.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from selfsup.errors import SelfsupError

TEMPORARY = re.compile(r"^\..+\.tmp-(.+)-(\d+)(\.[A-Za-z0-9]+)?$")
"""The names of this module's temporary files: ``.NAME.tmp-HOST-PID`` (with a suffix a library
needs): on a disk that several machines share, a process is known by both."""


class WriteError(SelfsupError):
    """A file could not be written (the message names it, the OS error and what would help)."""


def temporary_name(path: Path, suffix: str = "") -> Path:
    """Where ``path`` is written before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}{suffix}")


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; raises :class:`WriteError`."""
    write_file(path, lambda handle: handle.write(data), needed=len(data))


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; raises :class:`WriteError`."""
    write_bytes(path, text.encode("utf-8"))


def write_file(path: str | Path, write: Callable[[BinaryIO], object], needed: int | None = None) -> None:
    """Call ``write(handle)`` on a binary file that becomes ``path`` once it is complete and on the
    disk. ``needed``: the bytes it will write, where known (a disk without them is refused before
    writing). Raises :class:`WriteError` for a failed write, leaving no temporary file."""
    path = Path(path)
    tmp = temporary_name(path)
    if needed is not None:
        check_space(path, needed)
    handle = None
    try:
        with open(tmp, "wb") as raw:
            handle = _Recording(raw)
            try:
                write(handle)
            except BaseException as exc:
                if handle.error is None and isinstance(exc, OSError):
                    raise _NotWriting(exc) from None  # e.g. reading an input: not this file's fault
                raise
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if isinstance(exc, _NotWriting):
            _remove(tmp)
            raise exc.cause from None
        cause = handle.error if handle is not None and handle.error is not None else exc
        error = write_error(cause, path, needed, _written(tmp))
        _remove(tmp)
        raise error from None


def write_path(path: str | Path, write: Callable[[Path], object], suffix: str = "") -> None:
    """Call ``write(tmp)`` for a library that writes to a path it is given (``suffix``: an ending
    it needs), then rename ``tmp`` to ``path``. Raises :class:`WriteError` for a failed write (the
    cause found from the OS error, the free space and the file-size limit where the library
    words it its own way), leaving no temporary file."""
    path = Path(path)
    tmp = temporary_name(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        error = write_error(exc, path, None, _written(tmp), tmp)
        _remove(tmp)
        raise error from None


@contextmanager
def folder(path: str | Path) -> Iterator[Path]:
    """A temporary folder to write into, whose files replace those of the same names in the
    folder ``path`` once the block ends without error: the whole folder at once where it is new,
    file by file where it exists (other files there are left, so that a user's folder given as
    ``--out`` loses nothing); on error the temporary folder is removed and a failed write raised
    as :class:`WriteError`. For libraries that write a folder (``save_pretrained``)."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
            return
        for entry in tmp.iterdir():
            if (path / entry.name).is_dir():
                shutil.rmtree(path / entry.name)
            os.replace(entry, path / entry.name)
        tmp.rmdir()
    except BaseException as exc:
        error = write_error(exc, path, None, _written(tmp), tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise error from None


class _NotWriting(Exception):
    """An OS error of a write callback that no write of the file raised (reading an input, say)."""

    def __init__(self, cause: OSError):
        super().__init__(str(cause))
        self.cause = cause


def _remove(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:  # the error being raised says more than this one
        pass


def cache_failure(exc: BaseException) -> str:
    """Why a cache (a store of decoded images, a corpus, token ids) could not be written, in a few words."""
    if isinstance(exc, WriteError):
        return str(exc).partition(": ")[2] or str(exc)
    return getattr(exc, "strerror", None) or str(exc)


def check_space(path: str | Path, needed: int) -> None:
    """Raise :class:`WriteError` where the file system of ``path`` has fewer than ``needed`` bytes
    free, or ``needed`` is over the file-size limit (``ulimit -f``)."""
    path = Path(path)
    free = _free(path.parent)
    if free is not None and needed > free:
        raise WriteError(_message(path, errno.ENOSPC, needed, free))
    limit = _size_limit()
    if limit is not None and needed > limit:
        raise WriteError(_message(path, errno.EFBIG, needed, free))


def reserve(handle: BinaryIO, path: Path, size: int) -> None:
    """Allocate ``size`` bytes of the open file ``handle`` (``path``) on the disk now, so that
    writing to its memory map cannot hit a full disk (SIGBUS). Raises :class:`WriteError`."""
    check_space(path, size)
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: the space was checked above
        return
    try:
        os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without allocation: checked above
            return
        raise write_error(exc, path, size, 0) from None


def remove_stale_temporaries(directory: Path, alive: Callable[[int], bool]) -> None:
    """Remove this module's temporary files in ``directory`` whose process (``alive(pid)``) is gone:
    what a killed process left behind."""
    try:
        names = list(Path(directory).iterdir())
    except OSError:
        return
    host = socket.gethostname()
    for entry in names:
        found = TEMPORARY.match(entry.name)
        if found and found.group(1) == host and not alive(int(found.group(2))):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


class _Recording(io.RawIOBase):
    """A file that keeps the first OS error of its writes: libraries that write through it
    (``torch.save``) replace that error with their own words."""

    def __init__(self, raw: BinaryIO):
        super().__init__()
        self.raw, self.error = raw, None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.raw.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.raw.flush()

    def tell(self) -> int:
        return self.raw.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def seekable(self) -> bool:
        return True


OS_ERROR = re.compile(r"os error (\d+)|\[Errno (\d+)\]")


def write_error(
    exc: BaseException, path: Path, needed: int | None = None, written: int = 0, tmp: Path | None = None
) -> BaseException:
    """``exc`` as :class:`WriteError` where it is a failed write of ``path`` (or of its temporary
    file or folder ``tmp``): an OSError about that file (or naming no file), or a library's error
    that names an OS error, or speaks of writing while the disk is full or the largest file
    written (``written`` bytes) is at the file-size limit. Other errors (an input that cannot be
    read, a bug, an interrupt) are returned as they are."""
    if isinstance(exc, (SelfsupError, KeyboardInterrupt, SystemExit, MemoryError)):
        return exc
    if isinstance(exc, OSError):
        named = exc.filename
        ours = named is None or any(str(named).startswith(str(p)) for p in (path, tmp, path.parent) if p)
        return (
            WriteError(_message(path, exc.errno, needed, _free(path.parent))) if ours and exc.errno else exc
        )
    found = OS_ERROR.search(str(exc))
    code = int(next(g for g in found.groups() if g)) if found else None
    wording = str(exc).lower()
    about_writing = any(word in wording for word in ("write", "unexpected pos", "i/o", "serializ", "disk"))
    free, limit = _free(path.parent), _size_limit()
    if code is None and about_writing and free is not None and free < FULL:
        code = errno.ENOSPC
    if code is None and about_writing and limit is not None and written >= limit:
        code = errno.EFBIG
    if code is None:
        return exc
    return WriteError(_message(path, code, needed, free))


FULL = 2**20
"""Free bytes below which a disk counts as full (blocks, reserved space): a failed write there
is for want of space."""


def _written(tmp: Path) -> int:
    """The size of the temporary file, or of the largest file in a temporary folder."""
    try:
        if tmp.is_dir():
            return max((f.stat().st_size for f in tmp.rglob("*") if f.is_file()), default=0)
        return tmp.stat().st_size
    except OSError:
        return 0


def _message(path: Path, code: int, needed: int | None, free: int | None) -> str:
    message = f"cannot write {path}: {os.strerror(code)} ({errno.errorcode.get(code, code)})"
    if code == errno.ENOSPC:
        wants = f"needs about {_size(needed)}, " if needed is not None else ""
        has = f"{_size(free)} free" if free is not None else "the disk is full"
        message += f": the file {wants}{has} on its disk; free some space or write elsewhere"
    elif code == errno.EDQUOT:
        message += ": your disk quota is used up; free some space or write elsewhere"
    elif code == errno.EFBIG:
        limit = _size_limit()
        cap = f" of {_size(limit)}" if limit is not None else ""
        wants = f" ({_size(needed)} needed)" if needed is not None else ""
        message += f": over the file-size limit{cap}{wants}; raise it with `ulimit -f unlimited`"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        message += ": write elsewhere (--out) or make the folder writable"
    return message


def _free(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _size_limit() -> int | None:
    """The file-size limit (``ulimit -f``) in bytes; None where there is none (or no ``resource``)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _size(count: int | None) -> str:
    value = float(count or 0)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
