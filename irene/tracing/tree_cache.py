"""Features-only traces kept on disk, so that asking for the same call again traces nothing
(and imports neither torch nor transformers).

A features-only trace (no timing, on the meta device) is a pure function of what
:func:`request_key` records: the model's config, the traced call (batch size, sequence length,
phase, context length, optimizer of a training step), the dtype, the attention implementation,
the schema, and the software that traces it — every file of this package (SHA-256 of their
bytes), the versions and locations of torch and transformers, and Python's version. An entry is
used only when its recorded request equals the one asked for, so a changed config file, irene
file, torch or transformers is a miss (traced again), never a stale tree.

The config is keyed without building it:

* a built-in name: its canonical name (the config is written in this package, whose files are
  keyed);
* a local ``config.json`` (or a directory holding one): the SHA-256 of the file's bytes;
* a Hub name, or a model object: not cached (its config is known only after fetching it or
  importing transformers), :func:`request_key` returns None.

Where (:func:`default_cache_dir`): ``$IRENE_CACHE_DIR``, else ``$XDG_CACHE_HOME/irene/traces``,
else ``~/.cache/irene/traces``; ``IRENE_CACHE_DIR=off`` switches the cache off. One gzip'd JSON
file per request (``{"request": ..., "tree": ...}``), written atomically; at most
:data:`MAX_ENTRIES` files, the least recently used removed first. Only trees traced on the meta
device are kept (a trace that fell back to real weights is not). A damaged entry is reported
through ``warn`` and traced again.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import platform
from collections.abc import Callable
from importlib import metadata, util
from pathlib import Path
from typing import Any

from irene.tracing.registry import config_source, local_config_file
from irene.tree import Tree, TreeFormatError, tree_from_dict

#: the environment variable naming the cache directory (``off``: no cache)
CACHE_ENV = "IRENE_CACHE_DIR"
#: values of :data:`CACHE_ENV` that switch the cache off
OFF = frozenset({"off", "0", "no", "false", "none"})
#: entries kept; beyond, the least recently used are removed
MAX_ENTRIES = 256
#: the layout of an entry (part of every request: a new layout misses every old entry)
FORMAT = 1
SUFFIX = ".json.gz"


def default_cache_dir() -> Path | None:
    """The trace cache directory: ``$IRENE_CACHE_DIR`` (None when it says ``off``), else the
    user's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``) ``/irene/traces``."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        if chosen.strip().lower() in OFF or not chosen.strip():
            return None
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "irene" / "traces"


@functools.lru_cache(maxsize=1)
def software_key() -> dict[str, str]:
    """What traces the tree: SHA-256 of every file of the ``irene`` package (``__pycache__``
    left out), and the version and location of torch and transformers (found, not imported)
    and of Python."""
    import irene

    root = Path(irene.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*")
                       if p.is_file() and "__pycache__" not in p.relative_to(root).parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    out = {"irene": irene.__version__, "irene_files": digest.hexdigest(),
           "python": platform.python_version()}
    for package in ("torch", "transformers"):
        spec = util.find_spec(package)
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "unknown"
        out[package] = f"{version} at {spec.origin if spec is not None else 'nowhere'}"
    return out


def config_key(model: Any) -> dict[str, str] | None:
    """The config of ``model`` as a key (see the module docstring), or None when it cannot be
    keyed without building it. OSError when a local config file cannot be read."""
    if not isinstance(model, str):
        return None
    kind, where = config_source(model)
    if kind == "builtin":
        return {"builtin": where}
    if kind == "local":
        data = local_config_file(Path(where)).read_bytes()
        return {"config_sha256": hashlib.sha256(data).hexdigest()}
    return None


def request_key(model: Any, batch_size: int, seq_len: int, *, phase: str, context_len: int,
                dtype: str, attn: str, schema: str,
                optimizer: str | None = None) -> dict[str, Any] | None:
    """Everything a features-only trace of ``model`` depends on (JSON-ready), or None when
    ``model`` is not cached (a Hub name, a model object, an unreadable config file: the trace
    then reports what is wrong)."""
    try:
        config = config_key(model)
    except OSError:
        return None
    if config is None:
        return None
    return {"format": FORMAT, "model": model, "config": config, "batch_size": batch_size,
            "seq_len": seq_len, "phase": phase, "context_len": context_len,
            "optimizer": optimizer, "dtype": dtype, "attn": attn, "schema": schema,
            "software": software_key()}


def entry_path(directory: str | os.PathLike, request: dict[str, Any]) -> Path:
    """The file of ``request`` in ``directory`` (named by the SHA-256 of the request)."""
    text = json.dumps(request, sort_keys=True)
    return Path(directory) / f"{hashlib.sha256(text.encode()).hexdigest()[:40]}{SUFFIX}"


def load_tree(directory: str | os.PathLike, request: dict[str, Any],
              warn: Callable[[str], None]) -> Tree | None:
    """The cached trace of ``request``, or None (no entry, or a damaged one, reported through
    ``warn``). The tree's ``meta["trace_cache"]`` names the file it was read from."""
    path = entry_path(directory, request)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            entry = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, EOFError, ValueError) as exc:
        warn(f"note: ignoring the unreadable trace-cache entry {path} ({exc}); tracing again")
        return None
    if not isinstance(entry, dict) or entry.get("request") != request:
        warn(f"note: ignoring the trace-cache entry {path}: it was written for another "
             "request; tracing again")
        return None
    try:
        tree = tree_from_dict(entry.get("tree"), source=str(path))
    except TreeFormatError as exc:
        warn(f"note: ignoring the damaged trace-cache entry {path} ({exc}); tracing again")
        return None
    try:
        os.utime(path)  # most recently used: kept longest
    except OSError:
        pass  # a read-only cache still serves; only the eviction order is affected
    tree.meta["trace_cache"] = str(path)
    return tree


def store_tree(directory: str | os.PathLike, request: dict[str, Any], tree: Tree,
               warn: Callable[[str], None]) -> Path | None:
    """Keep the traced ``tree`` of ``request`` (atomically; only a trace on the meta device)
    and remove the least recently used entries beyond :data:`MAX_ENTRIES`. Returns the file,
    or None when nothing was written (a failure to write is reported through ``warn``)."""
    from irene.files import atomic_write

    if tree.meta.get("traced_on") != "meta":
        return None
    path = entry_path(directory, request)
    entry = {"request": request, "tree": tree.to_dict()}
    try:
        with atomic_write(path, "wb") as handle, \
                gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=1, mtime=0) as packed:
            packed.write(json.dumps(entry, allow_nan=False).encode("utf-8"))
        prune(Path(directory))
    except (OSError, ValueError) as exc:
        warn(f"note: the trace was not cached in {directory} ({exc})")
        return None
    return path


def prune(directory: Path, keep: int = MAX_ENTRIES) -> list[Path]:
    """Remove the least recently used entries of ``directory`` beyond ``keep``; returns them."""
    entries = []
    for path in directory.glob(f"*{SUFFIX}"):
        try:
            entries.append((path.stat().st_mtime_ns, path))
        except FileNotFoundError:  # removed meanwhile by another process
            continue
    entries.sort(reverse=True)
    removed = [path for _, path in entries[keep:]]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
