"""The campaign's measurement cache: every node measured once for the whole plan, kept on disk.

One :class:`CampaignCache` is shared by all trees of a campaign (across models, cells and runs):
nodes with the same signature (the same work, see :mod:`irene.tracing.capture`) are measured
once. It is saved beside the output as JSON (never pickle) -- ``trees.jsonl.gz`` ->
``trees.measurements.json`` -- so a run resumed on a fresh machine reuses what an earlier one
measured. The file records the context the measurements are valid for (hardware, device type,
meter and its domains, the protocol settings that change a value) and is refused when this
run's context differs; library versions are recorded and a difference is only reported.

The file also keeps the log of the runs that wrote it (``sessions``: when, where, seconds,
trees written, nodes measured and reused), from which the summary counts the minutes spent.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irene.measure.protocol import Measurement, MeasurementCache

CACHE_FORMAT = "irene-measurement-cache"
CACHE_VERSION = 1
#: at most one save of the cache file per this many seconds while measuring (and after a tree)
SAVE_INTERVAL_S = 2.0


class CacheMismatch(ValueError):
    """A saved cache measured in another context (hardware, meter, protocol) than this run."""


def cache_path(output: str | os.PathLike) -> Path:
    """``runs/x/trees.jsonl.gz`` -> ``runs/x/trees.measurements.json``."""
    output = Path(output)
    name = output.name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output.with_name(f"{name}.measurements.json")


@dataclass(frozen=True)
class CacheContext:
    """What measurements are valid for. ``hardware``: the device's name as in the tree key
    (the GPU's name, or the CPU's for CPU devices: ``cpu_model`` is then compared too);
    ``device_type``: cpu or cuda; ``meter`` and ``meter_domains``; ``protocol``: the
    (setting, value) pairs that change a measured value; ``versions``: torch, transformers and
    irene versions (reported, not compared)."""

    hardware: str
    device_type: str
    cpu_model: str
    meter: str
    meter_domains: tuple[str, ...]
    protocol: tuple
    versions: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"hardware": self.hardware, "device_type": self.device_type,
                "cpu_model": self.cpu_model, "meter": self.meter,
                "meter_domains": list(self.meter_domains),
                "protocol": {k: v for k, v in self.protocol}, "versions": dict(self.versions)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheContext:
        return cls(hardware=str(data["hardware"]), device_type=str(data["device_type"]),
                   cpu_model=str(data.get("cpu_model", "")), meter=str(data["meter"]),
                   meter_domains=tuple(data.get("meter_domains", ())),
                   protocol=tuple(sorted((str(k), v) for k, v in data["protocol"].items())),
                   versions=dict(data.get("versions", {})))

    def differences(self, other: CacheContext) -> list[str]:
        """What differs between two contexts and forbids sharing measurements (empty: none)."""
        out = []
        for name in ("hardware", "device_type", "meter", "meter_domains", "protocol"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name} {_show(a)} here, {_show(b)} in the file")
        if self.device_type == "cpu" and self.cpu_model != other.cpu_model:
            out.append(f"CPU {self.cpu_model!r} here, {other.cpu_model!r} in the file")
        return out

    def version_notes(self, other: CacheContext) -> list[str]:
        return [f"{k} {self.versions.get(k)} here, {other.versions.get(k)} in the file"
                for k in sorted(set(self.versions) | set(other.versions))
                if self.versions.get(k) != other.versions.get(k)]


def _show(value: Any) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return "{" + ", ".join(f"{k}={v}" for k, v in value) + "}"
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def measurement_from_dict(data: dict[str, Any]) -> Measurement:
    """Inverse of :meth:`Measurement.to_dict` (plain JSON values)."""
    return Measurement(**data)


class CampaignCache(MeasurementCache):
    """A :class:`MeasurementCache` shared by every tree of a campaign and saved as JSON.

    :meth:`view` gives each tree its own hit/miss counts over the shared store; every new
    measurement is saved (at most every :data:`SAVE_INTERVAL_S` seconds, and by
    :meth:`save`), so a run killed part-way keeps what it measured. ``measured`` and
    ``reused`` count this run's new measurements and cache hits.
    """

    def __init__(self, context: CacheContext, path: Path | None, *, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(enabled=enabled)
        self.context, self.path = context, path
        self.sessions: list[dict[str, Any]] = []
        self.measured = 0
        self.reused = 0
        self.notes: list[str] = []
        self._clock = clock
        self._last_save = clock()
        self._unsaved = False
        #: the run log entry being written and its start (time.perf_counter()): its
        #: ``seconds`` are brought up to date at every save, so a killed run's time counts
        self.live_session: tuple[dict[str, Any], float] | None = None

    # -- reading and saving ---------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | None, context: CacheContext, *,
             enabled: bool = True) -> CampaignCache:
        """The cache saved at ``path`` (checked against ``context``), or a new empty one.

        Raises :class:`CacheMismatch` when the file was measured in another context, and
        ValueError naming the file when it is not a measurement cache.
        """
        cache = cls(context, path, enabled=enabled)
        if path is None or not path.exists():
            return cache
        data = read_cache_file(path)
        saved = CacheContext.from_dict(data["context"])
        differences = context.differences(saved)
        if differences:
            raise CacheMismatch(
                f"{path}: these measurements were made in another context ("
                + "; ".join(differences) + "): they cannot be reused here; write the campaign "
                "to another output, or move this file and its trees away")
        cache.notes = [f"{path}: measured with other versions ({n}); reusing them"
                       for n in context.version_notes(saved)]
        for signature, entry in data["entries"].items():
            try:
                cache._store[signature] = measurement_from_dict(entry)
            except TypeError as exc:
                raise ValueError(f"{path}: entry {signature!r} is not a measurement ({exc})") \
                    from exc
        cache.sessions = list(data.get("sessions", []))
        return cache

    def to_dict(self) -> dict[str, Any]:
        if self.live_session is not None:
            session, start = self.live_session
            session["seconds"] = round(time.perf_counter() - start, 3)
        return {"format": CACHE_FORMAT, "version": CACHE_VERSION,
                "context": self.context.to_dict(), "sessions": self.sessions,
                "entries": {str(k): m.to_dict() for k, m in self._store.items()}}

    def save(self) -> None:
        """Write the cache atomically to its path (nothing when it has none)."""
        if self.path is None:
            return
        from irene.files import atomic_write

        with atomic_write(self.path) as handle:
            json.dump(self.to_dict(), handle, allow_nan=False, separators=(",", ":"))
        self._last_save = self._clock()
        self._unsaved = False

    def save_soon(self) -> None:
        """Save when the last save is older than :data:`SAVE_INTERVAL_S` seconds."""
        self._unsaved = True
        if self._clock() - self._last_save >= SAVE_INTERVAL_S:
            self.save()

    def flush(self) -> None:
        """Save if anything changed since the last save."""
        if self._unsaved:
            self.save()

    # -- measuring ------------------------------------------------------------------------

    def get_or_measure(self, signature: Hashable | None,
                       measure: Callable[[], Measurement]) -> Measurement:
        known = self.enabled and signature is not None and signature in self._store
        result = super().get_or_measure(signature, measure)
        if known:
            self.reused += 1
        else:
            self.measured += 1
            if self.enabled and signature is not None:
                self.save_soon()
        return result

    def view(self) -> MeasurementCache:
        """A cache for one tree: its own hit/miss counts, this campaign's shared store."""
        return _TreeView(self)

    def add(self, entries: dict[str, dict[str, Any]]) -> int:
        """Merge measurements made elsewhere (a Ray worker's, as dicts); returns how many were
        new."""
        new = 0
        for signature, entry in entries.items():
            if signature not in self._store:
                self._store[signature] = measurement_from_dict(entry)
                new += 1
        if new:
            self.save_soon()
        return new

    def entries(self, signatures: set[str] | None = None) -> dict[str, dict[str, Any]]:
        """The stored measurements (those of ``signatures`` only, if given) as plain dicts."""
        return {str(k): m.to_dict() for k, m in self._store.items()
                if signatures is None or k in signatures}

    def signatures(self) -> set[str]:
        return {str(k) for k in self._store}


class _TreeView(MeasurementCache):
    """One tree's window on a :class:`CampaignCache` (shared store, own counts)."""

    def __init__(self, owner: CampaignCache) -> None:
        super().__init__(enabled=owner.enabled)
        self._store = owner._store
        self.owner = owner

    def get_or_measure(self, signature: Hashable | None,
                       measure: Callable[[], Measurement]) -> Measurement:
        known = self.enabled and signature is not None and signature in self._store
        if known:
            self.hits += 1
        else:
            self.misses += 1
        return self.owner.get_or_measure(signature, measure)


def read_cache_file(path: Path) -> dict[str, Any]:
    from irene.files import read_small_text

    try:
        data = json.loads(read_small_text(path, limit=1 << 30))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not a measurement cache (malformed JSON: "
                         f"{exc.msg})") from exc
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path}: not an irene measurement cache")
    if data.get("version") != CACHE_VERSION:
        raise ValueError(f"{path}: measurement cache version {data.get('version')!r}; this "
                         f"irene reads version {CACHE_VERSION}")
    if not isinstance(data.get("entries"), dict) or not isinstance(data.get("context"), dict):
        raise ValueError(f"{path}: the measurement cache lacks its entries or context")
    return data
