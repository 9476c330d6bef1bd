"""``irene load``: send prompts to an ``irene serve`` endpoint and attribute energy per request.

Requests go out through one ``httpx.AsyncClient`` with at most ``concurrency`` in flight and, if
``rate`` is given, request ``i`` not before ``i / rate`` seconds after the start (a fixed
arrival schedule). Each request streams (NDJSON), so the client records when it was sent, when
the first token arrived and when the last byte did, on this process's monotonic clock
(``time.perf_counter``); the server's own marks come back in the last line. The meter is read
as back-to-back intervals over the whole run and each interval's energy is split among the
requests active in it (:mod:`irene.serve.attribution`: by active time, idle apart).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from irene.measure.base import Meter
from irene.serve.attribution import Attribution, Interval, MeterTrace, attribute
from irene.serve.prompts import Prompt

#: the ``kind`` written in every run directory's summary.json (recognises earlier outputs)
RUN_KIND = "irene-load"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class LoadError(RuntimeError):
    """The endpoint cannot be used (unreachable, not an irene server, meter cannot attach)."""


@dataclass
class RequestRecord:
    """One request: times in seconds from the run's start (client clock), energy in joules."""

    index: int
    prompt_id: str
    status: int | None = None
    error: str | None = None
    start_s: float | None = None
    first_token_s: float | None = None
    end_s: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    server_queue_s: float | None = None
    server_ttft_s: float | None = None
    server_total_s: float | None = None
    energy_j: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None

    @property
    def latency_s(self) -> float | None:
        if self.start_s is None or self.end_s is None:
            return None
        return self.end_s - self.start_s

    @property
    def ttft_s(self) -> float | None:
        if self.start_s is None or self.first_token_s is None:
            return None
        return self.first_token_s - self.start_s


@dataclass
class LoadRun:
    """A finished load run: its requests, the meter's intervals, the split and a summary."""

    records: list[RequestRecord]
    intervals: list[Interval] = field(default_factory=list)
    attribution: Attribution | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def energy_label(meter: Meter | None) -> str:
    """How a run's energies may be called: measured, simulated or estimated."""
    if meter is None:
        return "none"
    if getattr(meter, "estimated", False):
        from irene.measure.cpumodel import ESTIMATED_LABEL

        return ESTIMATED_LABEL
    if "simulated" in meter.name:
        return "simulated, not measured"
    return "measured"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


async def _fetch_health(client: Any, url: str) -> dict[str, Any]:
    import httpx

    try:
        response = await client.get(f"{url}/health", timeout=10.0)
    except httpx.HTTPError as exc:
        raise LoadError(f"{url}: no server answers ({type(exc).__name__}: {exc})") from exc
    if response.status_code != 200:
        raise LoadError(f"{url}/health: HTTP {response.status_code}")
    try:
        health = response.json()
    except ValueError:
        raise LoadError(f"{url}/health: not JSON: is this an irene serve endpoint?") from None
    if not isinstance(health, dict) or "runtime" not in health:
        raise LoadError(f"{url}/health: not an irene serve endpoint")
    return health


async def _one(client: Any, url: str, record: RequestRecord, prompt: Prompt,
               max_new_tokens: int | None, t0: float) -> None:
    import httpx

    body: dict[str, Any] = {"prompt": prompt.text, "stream": True}
    if max_new_tokens:
        body["max_new_tokens"] = max_new_tokens
    record.start_s = time.perf_counter() - t0
    final: dict[str, Any] | None = None
    try:
        async with client.stream("POST", f"{url}/generate", json=body) as response:
            record.status = response.status_code
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                record.error = _detail(text) or f"HTTP {response.status_code}"
            else:
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    if record.first_token_s is None:
                        record.first_token_s = time.perf_counter() - t0
                    item = json.loads(line)
                    if item.get("done"):
                        final = item
    except (httpx.HTTPError, ValueError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    record.end_s = time.perf_counter() - t0
    if final is not None:
        record.tokens_in, record.tokens_out = final["tokens_in"], final["tokens_out"]
        marks = final.get("marks") or {}
        received, first, end = marks.get("received"), marks.get("first_token"), marks.get("end")
        if received is not None:
            record.server_queue_s = received - (record.start_s + t0)
            if first is not None:
                record.server_ttft_s = first - received
            if end is not None:
                record.server_total_s = end - received
    elif record.ok:
        record.error = "stream ended without its final line"


def _detail(text: str) -> str | None:
    try:
        return str(json.loads(text).get("detail"))
    except (ValueError, AttributeError):
        return text.strip()[:200] or None


async def _drive(url: str, prompts: Sequence[Prompt], requests: int, concurrency: int,
                 rate: float | None, meter: Meter | None, max_new_tokens: int | None,
                 timeout_s: float, on_done: Callable[[RequestRecord], None],
                 period_s: float) -> tuple[list[RequestRecord], list[Interval], dict[str, Any],
                                           list[str], float]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        health = await _fetch_health(client, url)
        if meter is not None and hasattr(meter, "attach"):
            host = urlsplit(url).hostname or ""
            if host not in LOOPBACK:
                raise LoadError(f"--meter {meter.name} meters the server process, which must run "
                                f"on this machine (a loopback URL), not {host}")
            meter.attach(int(health["pid"]))
        records = [RequestRecord(i, prompts[i % len(prompts)].id) for i in range(requests)]
        gate = asyncio.Semaphore(concurrency)
        trace = MeterTrace(meter, period_s) if meter is not None else None
        t0 = time.perf_counter()

        async def send(i: int) -> None:
            if rate:
                await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            async with gate:
                await _one(client, url, records[i], prompts[i % len(prompts)],
                           max_new_tokens, t0)
            on_done(records[i])

        if trace is not None:
            trace.start()
        try:
            await asyncio.gather(*(send(i) for i in range(requests)))
        finally:
            intervals = trace.stop() if trace is not None else []
        duration = time.perf_counter() - t0
    shifted = [Interval(iv.t0 - t0, iv.t1 - t0, iv.energy_j) for iv in intervals]
    return records, shifted, health, (trace.notes if trace else []), duration


def run_load(url: str, prompts: Sequence[Prompt], *, requests: int, concurrency: int = 1,
             rate: float | None = None, meter: Meter | None = None,
             max_new_tokens: int | None = None, timeout_s: float = 600.0,
             period_s: float = 0.25,
             on_done: Callable[[RequestRecord], None] | None = None) -> LoadRun:
    """Send ``requests`` prompts (cycling through ``prompts``) to the server at ``url`` and
    return every request's record with its attributed energy and the run's summary. LoadError
    when nothing answers at ``url`` or it is not an irene server."""
    if not prompts:
        raise ValueError("no prompts to send")
    url = url.rstrip("/")
    records, intervals, health, notes, duration = asyncio.run(_drive(
        url, prompts, requests, concurrency, rate, meter, max_new_tokens, timeout_s,
        on_done or (lambda r: None), period_s))
    split = None
    if meter is not None:
        spans = [(r.start_s, r.end_s) for r in records
                 if r.start_s is not None and r.end_s is not None]
        split = attribute(intervals, spans)
        shares = iter(split.per_request_j)
        for r in records:
            if r.start_s is not None and r.end_s is not None:
                r.energy_j = next(shares)
    run = LoadRun(records, intervals, split)
    run.summary = summarise(run, url=url, health=health, meter=meter, notes=notes,
                            duration_s=duration, concurrency=concurrency, rate=rate)
    return run


def summarise(run: LoadRun, *, url: str, health: dict[str, Any], meter: Meter | None,
              notes: Sequence[str], duration_s: float, concurrency: int,
              rate: float | None) -> dict[str, Any]:
    """The run's figures: counts, latency and TTFT (p50/p95, s), throughput, energy (J)."""
    ok = [r for r in run.records if r.ok]
    latencies = [r.latency_s for r in ok if r.latency_s is not None]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    # what the client waited beyond the server's own work on the request (HTTP, event loop)
    outside = [r.latency_s - r.server_total_s for r in ok
               if r.latency_s is not None and r.server_total_s is not None]
    tokens_out = sum(r.tokens_out or 0 for r in ok)
    summary: dict[str, Any] = {
        "kind": RUN_KIND, "url": url, "model": health.get("model"),
        "runtime": health.get("runtime"), "engine": health.get("engine"),
        "device": health.get("device"), "server": health,
        "requests": len(run.records), "ok": len(ok), "failed": len(run.records) - len(ok),
        "concurrency": concurrency, "rate_per_s": rate, "duration_s": duration_s,
        "tokens_out": tokens_out,
        "latency_p50_s": percentile(latencies, 50), "latency_p95_s": percentile(latencies, 95),
        "ttft_p50_s": percentile(ttfts, 50), "ttft_p95_s": percentile(ttfts, 95),
        "outside_server_p50_s": percentile(outside, 50),
        "throughput_req_s": len(ok) / duration_s if duration_s > 0 else None,
        "throughput_tok_s": tokens_out / duration_s if duration_s > 0 else None,
        "meter": meter.name if meter is not None else None,
        "energy": energy_label(meter), "meter_notes": list(notes),
        "attribution": "each interval's energy split among the requests active in it in "
                       "proportion to active time; time with no request active is idle",
    }
    if run.attribution is not None:
        ok_j = [r.energy_j for r in ok if r.energy_j is not None]
        summary.update({
            "total_j": run.attribution.total_j, "idle_j": run.attribution.idle_j,
            "active_j": run.attribution.active_j,
            "j_per_request": statistics.fmean(ok_j) if ok_j else None,
            "j_per_token": sum(ok_j) / tokens_out if tokens_out else None,
        })
    return summary


# --------------------------------------------------------------------------------------------
# writing a run directory

CSV_FIELDS = ["index", "prompt_id", "status", "error", "start_s", "first_token_s", "end_s",
              "latency_s", "ttft_s", "tokens_in", "tokens_out", "server_queue_s",
              "server_ttft_s", "server_total_s", "energy_j", "energy"]


def record_row(record: RequestRecord, label: str) -> dict[str, Any]:
    """One output row; ``energy`` is the energy's label (measured, estimated, simulated)."""
    row = asdict(record)
    row["latency_s"], row["ttft_s"], row["energy"] = record.latency_s, record.ttft_s, label
    return {k: row[k] for k in CSV_FIELDS}


def owns_run_dir(path: Path) -> bool:
    """Whether ``path`` holds an earlier ``irene load`` run (so it may be replaced)."""
    try:
        return json.loads((path / "summary.json").read_text()).get("kind") == RUN_KIND
    except (OSError, ValueError, AttributeError):
        return False


def write_run(run: LoadRun, directory: str | os.PathLike) -> Path:
    """Write ``requests.csv``, ``requests.jsonl``, ``intervals.csv`` and ``summary.json`` into
    ``directory`` as one unit (nothing half-written; only an earlier run is replaced)."""
    from irene.files import directory_unit

    label = run.summary.get("energy", "none")
    rows = [record_row(r, label) for r in run.records]
    with directory_unit(directory, owns=owns_run_dir) as staging:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (staging / "requests.csv").write_text(buffer.getvalue())
        (staging / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["t0_s", "t1_s", "energy_j", "energy"])
        writer.writerows([iv.t0, iv.t1, iv.energy_j, label] for iv in run.intervals)
        (staging / "intervals.csv").write_text(buffer.getvalue())
        (staging / "summary.json").write_text(json.dumps(run.summary, indent=2) + "\n")
    return Path(directory)
