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
* temporary files are named ``.NAME.PID.XXXXXXXX.tmp`` (PID: the writing process) and removed
  on any exception or on SIGTERM / SIGHUP (see :func:`remove_temp_files_on_signals`); readers
  skip such names; one left by a killed writer (``kill -9``) is removed at the next write of the
  same output, once no live process has that PID (:func:`remove_stale_temp_files`);
* a lock file (``.NAME.lock``) is never opened through a link: a symbolic or hard link planted
  at its path is refused (:func:`exclusive_lock`);
* an error writing an output names that output, never the temporary file (:func:`output_errors`);
* a directory swapped into place (:func:`directory_unit`) that a kill interrupted between its two
  renames is restored or completed at the next write or read (:func:`recover_directory_swap`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

#: names of temporary files written by :func:`atomic_write` (readers ignore them)
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")
#: ``.NAME.PID.XXXXXXXX.tmp``: a temporary file or staging directory of this package
_OWN_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]{6,}\.tmp$")
#: ``.NAME.old.PID.XXXXXXXX``: an earlier directory moved out during :func:`directory_unit`'s swap
_OLD_DIR = re.compile(r"^\.(?P<name>.+)\.old\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]{6,}$")
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


#: errors of a write itself (raised without a file name by ``write``/``flush``/``close``)
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO,
                           errno.EACCES, errno.EPERM})


@contextlib.contextmanager
def output_errors(path: str | os.PathLike, *own: str | os.PathLike) -> Iterator[None]:
    """Re-raise an OSError of writing ``path`` so that it names ``path``, the output the user
    gave, not a temporary file or staging directory beside it (``own``: those paths) -- e.g.
    ``out.jsonl: No space left on device``. Errors naming other files pass unchanged."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        name = None if exc.filename is None else os.fsdecode(exc.filename)
        ours = [os.fsdecode(p) for p in own]
        if name is None:
            if exc.errno not in _WRITE_ERRNOS:
                raise
        elif not any(name == p or name.startswith(p + os.sep) for p in ours):
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from exc


def _temp_prefix(target: Path) -> str:
    """``.NAME.PID.``: temporary files carry the writing process's id, so one left by a killed
    process can be told from one still being written (:func:`remove_stale_temp_files`)."""
    return f".{target.name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id may be alive (True when it cannot be told)."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True


def remove_stale_temp_files(target: str | os.PathLike) -> list[str]:
    """Remove the temporary files (and staging directories) of earlier writes of ``target``
    whose writer is dead (``kill -9``, power loss); returns their names.

    Only names of this package's pattern for this very output (``.NAME.PID.XXXXXXXX.tmp``), owned
    by this user, not links, and whose PID no live process has are removed: another process's
    write in progress, or anyone else's file, is never touched.
    """
    target = Path(target)
    removed: list[str] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = _OWN_TEMP.match(entry.name)
        if match is None or match["name"] != target.name or _pid_alive(int(match["pid"])):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid != os.getuid():
            continue
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif stat.S_ISREG(info.st_mode):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        else:
            continue
        removed.append(entry.name)
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds.

    Nothing half-written is ever left at ``path``: on any exception the temporary file is
    removed. Only a regular file or a new path is replaced (:func:`resolve_output`). Temporary
    files a killed earlier write of ``path`` left are removed first
    (:func:`remove_stale_temp_files`); an error of the write names ``path``
    (:func:`output_errors`).
    """
    target = resolve_output(path)
    with output_errors(path, target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(target)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp",
                                   dir=target.parent)
    _live_temp_files.add(tmp)
    try:
        with output_errors(path, tmp):
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


#: how many :func:`signals_deferred` blocks are open, and the signals they held back
_deferring = 0
_deferred: list[int] = []


def _on_fatal_signal(signum: int, frame: object = None) -> None:
    """Remove in-progress temporary files and exit with status 128 + ``signum`` -- or, inside
    :func:`signals_deferred`, remember the signal for the end of the block."""
    if _deferring:
        _deferred.append(signum)
        return
    remove_live_temp_files()
    raise SystemExit(128 + signum)


def remove_temp_files_on_signals() -> None:
    """On SIGTERM / SIGHUP: remove in-progress temporary files, then exit (status 128 + n).

    Python already runs ``finally`` blocks on Ctrl-C (KeyboardInterrupt); a killed process
    does not, so the command line installs this handler.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not in the main thread: leave as is
            signal.signal(sig, _on_fatal_signal)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back SIGTERM / SIGHUP (when :func:`remove_temp_files_on_signals` handles them) and
    SIGINT (in the main thread) for a few steps that must not be split, such as the two renames
    of a directory swap; a signal that came meanwhile takes effect at the end of the block."""
    global _deferring
    previous_int = None
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            previous_int = signal.signal(signal.SIGINT, _on_fatal_signal)
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
        if not _deferring and _deferred:
            signum = _deferred[0]
            _deferred.clear()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            _on_fatal_signal(signum)


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
        import zlib

        try:  # the first member's start: a truncated or damaged file still shows what it is
            with open(path, "rb") as handle:
                head = zlib.decompressobj(31).decompress(handle.read(1 << 16), 4096)
        except (OSError, zlib.error):
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
    replaced). A replacement a kill interrupted is first recovered
    (:func:`recover_directory_swap`)."""
    target = Path(target)
    note = recover_directory_swap(target, owns=owns)
    if note:
        print(f"note: {note}", file=sys.stderr)
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
    nothing) at ``target``, never a mix of two runs. See :func:`check_replaceable_dir`; a swap
    a kill interrupted is first recovered (:func:`recover_directory_swap`)."""
    final = Path(os.path.realpath(target))
    check_replaceable_dir(final, owns=owns)
    with output_errors(target, final.parent):
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(final)
        staging = Path(tempfile.mkdtemp(prefix=_temp_prefix(final), suffix=".tmp",
                                        dir=final.parent))
    _live_temp_files.add(str(staging))
    try:
        with output_errors(target, staging):
            yield staging
            os.chmod(staging, 0o777 & ~_umask())
            _swap_into_place(staging, final)
    finally:
        _live_temp_files.discard(str(staging))
        shutil.rmtree(staging, ignore_errors=True)


def _swap_into_place(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` directory at ``target``, moving an old one out first.

    SIGTERM, SIGHUP and SIGINT arriving during the two renames are held back until both are
    done (:func:`signals_deferred`), so they cannot leave ``target`` missing; a SIGKILL between
    them is recovered by :func:`recover_directory_swap` at the next run."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.{os.getpid()}.", dir=target.parent))
    os.rmdir(old)
    try:
        with signals_deferred():
            os.rename(target, old)
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(old, target)  # put the earlier output back
                raise
    finally:
        if os.path.lexists(target):  # else ``old`` is the only copy left: keep it
            shutil.rmtree(old, ignore_errors=True)


def recover_directory_swap(target: str | os.PathLike, *,
                           owns: Callable[[Path], bool]) -> str | None:
    """Finish a :func:`directory_unit` swap that a kill interrupted; returns what was done.

    The swap moves the earlier output to ``.NAME.old.PID.XXXXXXXX`` and then the new one to
    ``NAME``. When its process is dead and ``NAME`` is missing, the earlier output is put back
    (the run that was writing did not finish); when ``NAME`` is there, the leftover earlier
    output is removed (the swap had finished). Only directories ``owns`` recognises are moved
    or removed; OutputError when several earlier outputs compete for a missing ``NAME``.
    """
    target = Path(os.path.realpath(target))
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return None
    olds = []
    for entry in entries:
        match = _OLD_DIR.match(entry.name)
        if match and match["name"] == target.name and not _pid_alive(int(match["pid"])) \
                and entry.is_dir(follow_symlinks=False) and owns(Path(entry.path)):
            olds.append(Path(entry.path))
    if not olds:
        return None
    if os.path.lexists(target):
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)
        return (f"{target}: removed {len(olds)} earlier copy(ies) left by an interrupted "
                "replacement")
    if len(olds) > 1:
        raise OutputError(f"{target}: missing, and several earlier copies were left by "
                          f"interrupted replacements ({', '.join(o.name for o in olds)}); "
                          "rename the one to keep to " + target.name)
    os.rename(olds[0], target)
    return (f"{target}: restored the earlier output from {olds[0].name} (its replacement was "
            "interrupted)")


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


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` for a file a user hands in, with one-line errors (ValueError): a document
    nested deeper than Python can parse says so (no RecursionError), and an integer longer than
    :data:`irene.limits.MAX_INT_DIGITS` digits is read as ``inf`` (``-inf``) instead of raising
    Python's int-digit ValueError, so the field's own range check names it."""
    try:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise
        except ValueError:  # Python's limit on the digits of an integer
            return json.loads(text, parse_int=_bounded_int)
    except RecursionError:
        raise ValueError("JSON nested too deeply (more levels than any irene file has)") \
            from None


def _bounded_int(digits: str) -> int | float:
    from irene.limits import MAX_INT_DIGITS

    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        return float("-inf") if digits.startswith("-") else float("inf")
    return int(digits)


# --------------------------------------------------------------------------------------------
# one writer per output


class LockedError(OutputError):
    """Another process holds the lock of an output file."""


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside the file ``path`` resolves to."""
    target = resolve_output(path)
    return target.parent / f".{target.name}.lock"


def _open_lock(lock: Path, path: str | os.PathLike) -> int:
    """Open (create) a lock file without ever following a link: a symbolic link at its path
    (dangling or not), a hard link to another file, a FIFO or a device is refused."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(lock, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(f"{lock}: the lock file of {path} is a symbolic link; irene never "
                              "opens a lock through a link: remove it") from exc
        raise OSError(exc.errno, f"{exc.strerror} (creating its lock file {lock.name})",
                      os.fspath(path)) from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "a hard link to another file" if stat.S_ISREG(info.st_mode) else \
            "not a regular file"
        raise OutputError(f"{lock}: the lock file of {path} is {what}; irene never writes a "
                          "lock through a link: remove it")
    return fd


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for writing ``path`` (a ``.NAME.lock`` file beside it) for the
    block; LockedError at once if another process holds it. The lock dies with the process;
    the lock file is removed when the block ends (a killed process leaves it, harmlessly). The
    lock file is never opened through a link (:func:`_open_lock`)."""
    lock = lock_path(path)
    with output_errors(path, lock.parent):
        lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _locked_file(lock, path)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still holding it: a waiter then retries on a new file
        os.close(fd)


def _locked_file(lock: Path, path: str | os.PathLike) -> int:
    """An open descriptor of ``lock`` holding its exclusive lock. If the previous holder
    removed the file between our open and our lock, open the new one (it is the lock now)."""
    while True:
        fd = _open_lock(lock, path)
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
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)
