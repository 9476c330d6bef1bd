"""Safe output files: atomic writes, outputs checked against inputs, one writer per file.

Rules every command that writes follows:

* a file is written through a temporary file beside it and renamed over the target, and only
  over a regular file or a new path (a symbolic link is followed and its target replaced; a
  device, FIFO, socket or directory is refused): nothing half-written is ever left, and nothing
  that is not a plain file is ever replaced;
* an output that is one of the command's inputs (the same file, by inode) is refused;
* replacing an existing file of another kind (a model's ``config.json`` with trees, trees with
  an HTML page, ...) needs ``force``;
* a file that is appended to (a trace sweep) has one writer at a time: :func:`exclusive_lock`;
* temporary files are named ``.NAME.XXXXXXXX.tmp`` and removed on any exception or on SIGTERM /
  SIGHUP (see :func:`remove_temp_files_on_signals`); readers skip such names.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

#: names of temporary files written by :func:`atomic_write` (readers ignore them)
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")
#: the largest file irene reads whole (configs, small JSON): guards against /dev/zero and such
MAX_SMALL_FILE_BYTES = 64 * 2**20

_live_temp_files: set[str] = set()


class OutputError(ValueError):
    """An output path that must not be written (the message says why and how to proceed)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def resolve_output(path: str | os.PathLike) -> Path:
    """The path a write to ``path`` replaces: symbolic links followed; OutputError if that is an
    existing directory, device, FIFO or socket (only regular files and new paths are written)."""
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise OutputError(f"{path}: cannot use as output ({exc.strerror})") from exc
    if stat.S_ISDIR(mode):
        raise OutputError(f"{path}: is a directory; give a file name")
    if not stat.S_ISREG(mode):
        raise OutputError(f"{path}: not a regular file (a device, FIFO or socket); irene only "
                          "writes regular files")
    return target


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds.

    Nothing half-written is ever left at ``path``: on any exception the temporary file is
    removed. Only a regular file or a new path is replaced (:func:`resolve_output`).
    """
    target = resolve_output(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    _live_temp_files.add(tmp)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        _live_temp_files.discard(tmp)


def remove_live_temp_files() -> None:
    """Remove the temporary files (and staging directories) of writes still in progress
    (called on fatal signals)."""
    for tmp in list(_live_temp_files):
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _live_temp_files.discard(tmp)


def remove_temp_files_on_signals() -> None:
    """On SIGTERM / SIGHUP: remove in-progress temporary files, then exit (status 128 + n).

    Python already runs ``finally`` blocks on Ctrl-C (KeyboardInterrupt); a killed process
    does not, so the command line installs this handler.
    """
    def handler(signum: int, frame: object) -> None:
        remove_live_temp_files()
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not in the main thread: leave as is
            signal.signal(sig, handler)


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_write`'s temporary files."""
    return bool(TEMP_NAME.match(name))


# --------------------------------------------------------------------------------------------
# outputs against inputs


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same existing file (same device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def file_kind(path: str | os.PathLike) -> str | None:
    """What an existing file holds, sniffed from its first bytes: ``"trees"``, ``"html"``,
    ``"png"``, ``"svg"``, ``"json"``, ``"csv"``, ``"empty"`` or ``"other"``; None if absent."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except FileNotFoundError:
        return None
    except OSError:
        return "other"
    if not head.strip():
        return "empty"
    if head.startswith(b"\x1f\x8b"):
        import gzip

        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(4096)
        except (OSError, EOFError):
            return "other"
    if head.startswith(b"\x89PNG"):
        return "png"
    text = head.decode("utf-8", errors="replace").lstrip().lower()
    if text.startswith("<!doctype html") or text.startswith("<html"):
        return "html"
    if text.startswith("<?xml") or text.startswith("<svg"):
        return "svg"
    if text.startswith("{") and '"frontend_tree"' in text:
        return "trees"
    if text.startswith("{") or text.startswith("["):
        return "json"
    if "," in text.splitlines()[0]:
        return "csv"
    return "other"


def guard_output(path: str | os.PathLike, *, kind: str, inputs: Iterable[str | os.PathLike] = (),
                 force: bool = False) -> None:
    """Refuse to write ``path`` (OutputError) when it is one of ``inputs`` (same inode), is not a
    regular file or new path, or holds a file of another ``kind`` (unless ``force``)."""
    resolve_output(path)
    for source in inputs:
        if same_file(path, source):
            raise OutputError(f"{path}: is also an input of this command ({source}); "
                              "write the output somewhere else")
    existing = file_kind(path)
    if existing in (None, "empty", kind) or force:
        return
    raise OutputError(f"{path}: already exists and holds {_kind_text(existing)}, not "
                      f"{_kind_text(kind)}; give another path, or --force to replace it")


def _kind_text(kind: str) -> str:
    return {"trees": "energy trees (JSONL)", "html": "an HTML page", "png": "a PNG image",
            "svg": "an SVG image", "json": "JSON", "csv": "CSV", "other": "other data"}.get(
        kind, kind)


def guard_inside(directory: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse (OutputError) an output directory that contains one of the inputs."""
    root = Path(os.path.realpath(directory))
    for source in inputs:
        real = Path(os.path.realpath(source))
        if real == root or root in real.parents:
            raise OutputError(f"{directory}: contains the input {source}; this command replaces "
                              "what is in its output directory: choose another one")


# --------------------------------------------------------------------------------------------
# directories written as one unit


def check_replaceable_dir(target: str | os.PathLike, *, owns: Callable[[Path], bool]) -> None:
    """OutputError unless ``target`` is absent, an empty directory, or a directory that
    ``owns(target)`` recognises as an earlier output of the same kind (so nothing else is ever
    replaced)."""
    target = Path(target)
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise OutputError(f"{target}: exists and is not a directory")
    if next(target.iterdir(), None) is None:
        return
    if not owns(target):
        raise OutputError(f"{target}: is not empty and does not hold an earlier output of this "
                          "command; choose a new or empty directory")


@contextlib.contextmanager
def directory_unit(target: str | os.PathLike, *, owns: Callable[[Path], bool]) -> Iterator[Path]:
    """Write a directory as one unit: yields an empty staging directory beside ``target``; when
    the block succeeds the staging directory takes ``target``'s place (an earlier output is
    moved out, then removed), else it is removed. A failure leaves the earlier output (or
    nothing) at ``target``, never a mix of two runs. See :func:`check_replaceable_dir`."""
    final = Path(os.path.realpath(target))
    check_replaceable_dir(final, owns=owns)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    _live_temp_files.add(str(staging))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())
        _swap_into_place(staging, final)
    finally:
        _live_temp_files.discard(str(staging))
        shutil.rmtree(staging, ignore_errors=True)


def _swap_into_place(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` directory at ``target``, moving an old one out first."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)  # put the earlier output back
        raise
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# reading small files safely


def read_small_text(path: str | os.PathLike, *, limit: int = MAX_SMALL_FILE_BYTES) -> str:
    """The text of a regular file of at most ``limit`` bytes.

    Raises OSError for a missing file, ValueError for something that is not a regular file (a
    FIFO, device or directory, which could block or never end) or is too large, and
    UnicodeDecodeError for non-UTF-8 bytes.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path}: not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{path}: {info.st_size} bytes, more than the {limit} bytes "
                             "allowed here")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path}: more than the {limit} bytes allowed here")
    return data.decode("utf-8")


# --------------------------------------------------------------------------------------------
# one writer per output


class LockedError(OutputError):
    """Another process holds the lock of an output file."""


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for writing ``path`` (a ``.NAME.lock`` file beside it) for the
    block; LockedError at once if another process holds it. The lock dies with the process;
    the lock file is removed when the block ends (a killed process leaves it, harmlessly)."""
    target = resolve_output(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    fd = _locked_file(lock_path, path)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)  # while still holding it: a waiter then retries on a new file
        os.close(fd)


def _locked_file(lock_path: Path, path: str | os.PathLike) -> int:
    """An open descriptor of ``lock_path`` holding its exclusive lock. If the previous holder
    removed the file between our open and our lock, open the new one (it is the lock now)."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise LockedError(f"{path}: another irene process (pid {holder}) is writing this "
                              "file; wait for it to finish or write elsewhere") from exc
        try:
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)
