"""``open_meter(spec)``: turn a ``--meter`` value into a :class:`~irene.measure.base.Meter`.

Specs: ``"none"`` -> None (record features and times only); ``"auto"`` (every real meter that
works here: NVML and RAPL, combined); ``"nvml"``; ``"rapl"``; ``"wattmeter:PATH.csv"``;
several joined by ``+`` (``"nvml+rapl"``); ``"simulated"`` (tests only, never chosen by auto);
``"cpu-model[:TDP_W]"`` (an estimate from CPU utilisation, never chosen by auto: see
:mod:`irene.measure.cpumodel`).
A real meter that cannot be opened raises :class:`MeterUnavailable` listing each meter tried and
why it failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from irene.measure.base import Meter, MeterUnavailable, WindowResult
from irene.measure.simulated import SimulatedMeter

NO_METER_HINT = "To record features and times only (no energy), use --meter none."
#: meters tried by "auto", in order (the wattmeter needs a log path, so it is never automatic)
AUTO_METERS = ("nvml", "rapl")


class CombinedMeter(Meter):
    """Several meters read over the same windows; domains are the union (e.g. gpu:0 + cpu:*)."""

    def __init__(self, meters: Sequence[Meter]) -> None:
        if not meters:
            raise ValueError("CombinedMeter needs at least one meter")
        super().__init__(clock=meters[0].clock)
        self.meters = list(meters)
        self.name = "+".join(m.name for m in self.meters)
        self.min_window_s = max(m.min_window_s for m in self.meters)
        self.estimated = any(m.estimated for m in self.meters)
        domains = [d for m in self.meters for d in m.domains()]
        if len(set(domains)) != len(domains):
            raise ValueError(f"CombinedMeter: meters share domains: {domains}")

    def domains(self) -> list[str]:
        return [d for m in self.meters for d in m.domains()]

    def _begin(self) -> None:
        for m in self.meters:
            m.begin()

    def _end(self, duration_s: float) -> WindowResult:
        results = [m.end() for m in reversed(self.meters)][::-1]
        energy = {d: e for r in results for d, e in r.energy_j.items()}
        notes = tuple(f"{r.meter}: {n}" for r in results for n in r.notes)
        return WindowResult(energy, duration_s, self.name,
                            trusted=all(r.trusted for r in results), notes=notes)

    def _abort(self) -> None:
        for m in self.meters:
            m.abort()

    def close(self) -> None:
        for m in self.meters:
            m.close()


def _open_nvml() -> Meter:
    from irene.measure.nvml import NvmlMeter

    return NvmlMeter()


def _open_rapl() -> Meter:
    from irene.measure.rapl import RaplMeter

    return RaplMeter()


def _open_wattmeter(path: str) -> Meter:
    from irene.measure.wattmeter import WattmeterMeter

    if not path:
        raise MeterUnavailable("wattmeter: give the log file, e.g. --meter wattmeter:power.csv")
    return WattmeterMeter(path)


#: name -> function opening that real meter (raises MeterUnavailable with the reason)
OPENERS: dict[str, Callable[[], Meter]] = {"nvml": _open_nvml, "rapl": _open_rapl}


def _open_one(part: str) -> Meter:
    name, _, arg = part.partition(":")
    name = name.strip().lower()
    if name == "wattmeter":
        return _open_wattmeter(arg.strip())
    if name == "simulated":
        return SimulatedMeter()
    if name == "cpu-model":
        from irene.measure.cpumodel import parse_cpu_model_spec

        return parse_cpu_model_spec(arg.strip())
    if name in OPENERS:
        return OPENERS[name]()
    known = ", ".join(["none", "auto", *OPENERS, "wattmeter:PATH.csv", "simulated",
                       "cpu-model[:TDP_W]"])
    raise MeterUnavailable(f"unknown meter {part!r}; choose one of: {known}")


def _unavailable(tried: list[tuple[str, str]], asked: str) -> MeterUnavailable:
    """One line: every meter tried, each with its reason, then how to go on without energy."""
    parts = [f"[{name}] {reason.rstrip('.')}." for name, reason in tried]
    if asked == "auto":
        parts.append("[wattmeter] not tried automatically: give its log with "
                     "--meter wattmeter:PATH.csv.")
    return MeterUnavailable(f"no energy meter could be opened for --meter {asked}; tried: "
                            + " ".join(parts) + " " + NO_METER_HINT)


def _combine(meters: list[Meter]) -> Meter:
    return meters[0] if len(meters) == 1 else CombinedMeter(meters)


def open_meter(spec: str | None) -> Meter | None:
    """Open the meter named by ``spec`` (see the module docstring); None for ``"none"``.

    Raises :class:`MeterUnavailable` (listing every meter tried and why) when a requested real
    meter cannot be used or a name is unknown.
    """
    spec = (spec or "none").strip()
    if spec.lower() == "none":
        return None
    if spec.lower() == "auto":
        opened, tried = [], []
        for name in AUTO_METERS:
            try:
                opened.append(OPENERS[name]())
            except MeterUnavailable as exc:
                tried.append((name, str(exc)))
        if not opened:
            raise _unavailable(tried, "auto")
        return _combine(opened)
    opened, tried = [], []
    for part in spec.split("+"):
        try:
            opened.append(_open_one(part))
        except MeterUnavailable as exc:
            tried.append((part.partition(":")[0].strip(), str(exc)))
    if tried:
        for m in opened:
            m.close()
        raise _unavailable(tried, spec)
    return _combine(opened)


def meter_names(meter: Meter | str | Iterable[str] | None) -> set[str]:
    """Names of the base meters behind a meter, a ``"nvml+rapl"`` name, or a list of names."""
    if meter is None:
        return set()
    if isinstance(meter, Meter):
        meter = meter.name
    parts = meter.split("+") if isinstance(meter, str) else list(meter)
    return {p.strip().split(":")[0].lower() for p in parts if p.strip()}


#: feature -> ground-truth meters for which that feature is (part of) the target itself
LEAKY_FEATURES = {"gpu_energy_mean": {"nvml"}}


def leaky_features(meters: Meter | str | Iterable[str] | None) -> set[str]:
    """Node features that leak the target when the ground truth came from ``meters``.

    When NVML produced the ground truth (alone or with RAPL), ``gpu_energy_mean`` (NVML power x
    time) is the target, or most of it: a predictor must not train on it. Accepts a meter, a
    meter name (``"nvml+rapl"``) or names, as recorded in tree metadata.
    """
    names = meter_names(meters)
    return {feat for feat, sources in LEAKY_FEATURES.items() if names & sources}
