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

from irene.checks import InputError
from irene.measure.protocol import Measurement, MeasurementCache

CACHE_FORMAT = "irene-measurement-cache"
CACHE_VERSION = 1
#: at most one save of the cache file per this many seconds while measuring (and after a tree)
SAVE_INTERVAL_S = 2.0


class CacheError(InputError):
    """A saved measurement cache that cannot be used; the message names the file."""


class CacheMismatch(CacheError):
    """A saved cache measured in another context (hardware, meter, protocol) than this run."""


class CacheFormatError(CacheError):
    """A file that is not a valid measurement cache (malformed JSON, a bad entry)."""


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


#: the fields of a saved :class:`Measurement`
_MEASUREMENT_FIELDS = frozenset(Measurement.__dataclass_fields__)


def measurement_from_dict(data: Any, *, where: str = "<memory>") -> Measurement:
    """Inverse of :meth:`Measurement.to_dict`, checked as strictly as a tree's values (the same
    validators, :func:`irene.tree.check_field`): times (s per call) and energies (J per call)
    finite and at most :data:`irene.tree.MAX_MAGNITUDE`; ``time_s`` positive; ``energy_j``
    absent or at least :data:`irene.tree.MIN_ENERGY` (a zero or negative measured energy is
    not a measurement). CacheFormatError naming ``where`` and the field otherwise."""
    from irene.tree import TreeFormatError

    if not isinstance(data, dict):
        raise CacheFormatError(f"{where}: a measurement must be a JSON object, got "
                               f"{type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - _MEASUREMENT_FIELDS)
    if unknown:
        raise CacheFormatError(f"{where}: unknown field(s) {', '.join(unknown)}")
    try:
        values = _checked_measurement(data)
    except TreeFormatError as exc:
        raise CacheFormatError(f"{where}, field {exc.field!r}: {exc.message}") from exc
    return Measurement(**values)


def _valid(measurement: Measurement) -> bool:
    """Whether a measurement passes :func:`measurement_from_dict` (what the cache keeps)."""
    try:
        measurement_from_dict(measurement.to_dict())
    except CacheFormatError:
        return False
    return True


def _checked_measurement(data: dict[str, Any]) -> dict[str, Any]:
    from irene.tree import MAX_MAGNITUDE, MIN_ENERGY, TreeFormatError, check_field, check_magnitude

    ctx: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for name in ("time_s", "time_p10", "time_p90"):
        out[name] = check_magnitude(float(check_field(data, name, float, ctx, None)), name, ctx,
                                    None)
    if not out["time_s"] > 0:
        raise TreeFormatError(f"must be positive (seconds per call), got {out['time_s']!r}",
                              field="time_s")
    for name in ("repeats", "runs"):
        out[name] = check_field(data, name, int, ctx, None)
        if not 1 <= out[name] <= 2**31:
            raise TreeFormatError(f"must be a positive count, got {out[name]}", field=name)
    if data.get("energy_j") is not None:
        energy = check_magnitude(float(check_field(data, "energy_j", float, ctx, None)),
                                 "energy_j", ctx, None)
        if energy < MIN_ENERGY:
            raise TreeFormatError(f"{energy!r} J is not a measured energy (at least "
                                  f"{MIN_ENERGY:g} J per call)", field="energy_j")
        out["energy_j"] = energy
    for name in ("energy_p10", "energy_p90"):  # idle-subtracted percentiles may be negative
        if data.get(name) is not None:
            value = float(check_field(data, name, float, ctx, None))
            if abs(value) > MAX_MAGNITUDE:
                check_magnitude(value, name, ctx, None)  # raises
            out[name] = value
    for name, required in (("energy_by_domain", False), ("features", True),
                           ("idle_power_w", False)):
        if name in data and data[name] is not None:
            out[name] = _number_map(data, name, signed=name == "energy_by_domain")
        elif required:
            raise TreeFormatError("missing field", field=name)
    for name, kind in (("meter", str), ("trusted", bool), ("notes", list)):
        if data.get(name) is not None:
            out[name] = check_field(data, name, kind, ctx, None)
    if not all(isinstance(n, str) for n in out.get("notes", [])):
        raise TreeFormatError("must be a list of strings", field="notes")
    return out


def _number_map(data: dict[str, Any], name: str, *, signed: bool) -> dict[str, float]:
    """A ``{str: number}`` field, every number checked like a tree's (``signed``: may be
    negative, for idle-subtracted energies)."""
    from irene.tree import MAX_MAGNITUDE, TreeFormatError, check_field, check_magnitude

    mapping = check_field(data, name, dict, {}, None)
    out = {}
    for key, value in mapping.items():
        label = f"{name}.{key}"
        number = float(check_field({label: value}, label, float, {}, None))
        if not signed or abs(number) > MAX_MAGNITUDE:
            check_magnitude(number, label, {}, None)
        out[str(key)] = number
    if not all(isinstance(k, str) for k in mapping):
        raise TreeFormatError("keys must be strings", field=name)
    return out


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
        #: the run log entry being written and the seconds since its run started (read on the
        #: run's clock): its ``seconds`` are brought up to date at every save, so a killed
        #: run's time counts
        self.live_session: tuple[dict[str, Any], Callable[[], float]] | None = None

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
        saved, entries, sessions = read_cache_file(path)
        differences = context.differences(saved)
        if differences:
            raise CacheMismatch(
                f"{path}: these measurements were made in another context ("
                + "; ".join(differences) + "): they cannot be reused here; write the campaign "
                "to another output, or move this file and its trees away")
        cache.notes = [f"{path}: measured with other versions ({n}); reusing them"
                       for n in context.version_notes(saved)]
        cache._store.update(entries)
        cache.sessions = sessions
        return cache

    def to_dict(self) -> dict[str, Any]:
        if self.live_session is not None:
            session, elapsed = self.live_session
            session["seconds"] = round(elapsed(), 3)
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
                if _valid(result):
                    self.save_soon()
                else:  # e.g. <= 0 J after idle subtraction: not kept for reuse
                    self._store.pop(signature, None)
        return result

    def view(self) -> MeasurementCache:
        """A cache for one tree: its own hit/miss counts, this campaign's shared store."""
        return _TreeView(self)

    def add(self, entries: dict[str, dict[str, Any]]) -> int:
        """Merge measurements made elsewhere (a Ray worker's, as dicts); returns how many were
        new. Like this process's own, one that fails :func:`measurement_from_dict` is not kept
        for reuse (the tree it went into is checked when appended)."""
        new = 0
        for signature, entry in entries.items():
            if signature not in self._store:
                try:
                    self._store[signature] = measurement_from_dict(
                        entry, where=f"a worker's measurement {signature!r}")
                except CacheFormatError:
                    continue
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


def read_cache_file(path: Path) -> tuple[CacheContext, dict[str, Measurement],
                                         list[dict[str, Any]]]:
    """A cache file's context, measurements by signature and run log, every part checked
    (:func:`measurement_from_dict`); CacheFormatError naming the file and entry otherwise."""
    data = _read_cache_file(path)
    try:
        context = CacheContext.from_dict(data["context"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CacheFormatError(f"{path}: field 'context' is malformed ({exc!r})") from exc
    entries = {signature: measurement_from_dict(entry, where=f"{path}: entry {signature!r}")
               for signature, entry in data["entries"].items()}
    sessions = data.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(x, dict) for x in sessions):
        raise CacheFormatError(f"{path}: field 'sessions' must be a list of objects")
    return context, entries, list(sessions)


def _read_cache_file(path: Path) -> dict[str, Any]:
    """The checked top level of a cache file; CacheFormatError naming the file otherwise."""
    from irene.files import read_small_text

    try:
        data = json.loads(read_small_text(path, limit=1 << 30))
    except json.JSONDecodeError as exc:
        raise CacheFormatError(f"{path}:{exc.lineno}: not a measurement cache (malformed JSON: "
                               f"{exc.msg})") from exc
    except RecursionError as exc:
        raise CacheFormatError(f"{path}: not a measurement cache (JSON nested too deeply)") \
            from exc
    except (UnicodeDecodeError, ValueError) as exc:  # not UTF-8, not a regular file, too large
        raise CacheFormatError(f"{path}: not a measurement cache ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        raise CacheFormatError(f"{path}: not an irene measurement cache")
    if data.get("version") != CACHE_VERSION:
        raise CacheFormatError(f"{path}: measurement cache version {data.get('version')!r}; "
                               f"this irene reads version {CACHE_VERSION}")
    if not isinstance(data.get("entries"), dict) or not isinstance(data.get("context"), dict):
        raise CacheFormatError(f"{path}: the measurement cache lacks its entries or context")
    return data
