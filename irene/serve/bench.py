"""``irene serve-bench``: the runtimes side by side behind the same HTTP API.

For each runtime a server (``irene serve``) starts as a subprocess on the loopback address and
a free port, the load (:func:`irene.serve.load.run_load`) runs ``repeats`` times against it,
and the server is stopped with SIGTERM. Per runtime: J/request, J/token, latency p50/p95, time
to first token and throughput, each the median over the repeats; the per-request energies and
latencies, pooled over repeats, feed the statistics of :mod:`irene.serve.stats`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irene.serve.load import LoadRun, run_load
from irene.serve.prompts import Prompt
from irene.serve.stats import compare_groups

#: the summary figures reported per runtime (median over repeats), with their units
METRICS = {"j_per_request": "J/request", "j_per_token": "J/token",
           "latency_p50_s": "latency p50 (s)", "latency_p95_s": "latency p95 (s)",
           "ttft_p50_s": "TTFT p50 (s)", "throughput_tok_s": "tokens/s",
           "throughput_req_s": "requests/s",
           "outside_server_p50_s": "client - server time p50 (s)"}


class ServerStartError(RuntimeError):
    """A server subprocess exited or did not answer in time; the message has its last lines."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


@contextlib.contextmanager
def server_process(model: str, runtime: str, *, device: str = "cpu", max_new_tokens: int = 32,
                   threads: int | None = None, startup_timeout_s: float = 600.0,
                   extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """Start ``irene serve`` on 127.0.0.1 and a free port; yield ``(url, pid)`` once /health
    answers; SIGTERM on exit (the server finishes in-flight requests), SIGKILL after 60 s.
    ServerStartError (with the server's last log lines) if it exits or does not answer."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "irene", "serve", model, "--runtime", runtime,
               "--device", device, "--host", "127.0.0.1", "--port", str(port),
               "--max-new-tokens", str(max_new_tokens)]
    if threads:
        command += ["--threads", str(threads)]
    env = {**os.environ, **(extra_env or {})}
    with tempfile.TemporaryDirectory(prefix="irene-serve-") as tmp:
        log = Path(tmp) / "server.log"
        with open(log, "wb") as handle:
            proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + startup_timeout_s
            while True:
                if proc.poll() is not None:
                    raise ServerStartError(f"{runtime} server exited with status "
                                           f"{proc.returncode}: {_tail(log)}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise ServerStartError(f"{runtime} server did not answer within "
                                           f"{startup_timeout_s:.0f} s: {_tail(log)}")
                time.sleep(0.5)
            yield url, proc.pid
        finally:
            stop_process(proc)


def stop_process(proc: subprocess.Popen, timeout_s: float = 60.0) -> int:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


@dataclass
class RuntimeResult:
    """One runtime: its repeats' summaries and pooled per-request values, or why it failed."""

    runtime: str
    engine: str | None = None
    error: str | None = None
    summaries: list[dict[str, Any]] = field(default_factory=list)
    request_j: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    failed_requests: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.summaries)

    def median(self, key: str) -> float | None:
        values = [s[key] for s in self.summaries if s.get(key) is not None]
        return statistics.median(values) if values else None


def _pool(result: RuntimeResult, run: LoadRun) -> None:
    result.summaries.append(run.summary)
    for r in run.records:
        if not r.ok:
            result.failed_requests += 1
            continue
        if r.energy_j is not None:
            result.request_j.append(r.energy_j)
        if r.latency_s is not None:
            result.latency_s.append(r.latency_s)
        if r.ttft_s is not None:
            result.ttft_s.append(r.ttft_s)


def bench_runtime(model: str, runtime: str, prompts: Sequence[Prompt], *, repeats: int,
                  requests: int, concurrency: int, meter_spec: str, device: str,
                  max_new_tokens: int, threads: int | None, startup_timeout_s: float,
                  on_request: Callable[[], None]) -> RuntimeResult:
    """Serve ``runtime``, run the load ``repeats`` times, stop the server."""
    from irene.measure import MeterUnavailable, open_meter

    result = RuntimeResult(runtime)
    try:
        with server_process(model, runtime, device=device, max_new_tokens=max_new_tokens,
                            threads=threads, startup_timeout_s=startup_timeout_s) as (url, _):
            for _ in range(repeats):
                meter = open_meter(meter_spec)
                try:
                    run = run_load(url, prompts, requests=requests, concurrency=concurrency,
                                   meter=meter, on_done=lambda r: on_request())
                finally:
                    if meter is not None:
                        meter.close()
                result.engine = run.summary.get("engine")
                _pool(result, run)
    except (ServerStartError, MeterUnavailable) as exc:
        result.error = str(exc)
    return result


def run_serve_bench(model: str, runtimes: Sequence[str], prompts: Sequence[Prompt], *,
                    repeats: int = 3, requests: int | None = None, concurrency: int = 1,
                    meter_spec: str = "none", device: str = "cpu", max_new_tokens: int = 32,
                    threads: int | None = None, startup_timeout_s: float = 900.0,
                    on_request: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Every runtime in turn (see the module docstring); the whole comparison as a dict."""
    from irene.measure import open_meter

    count = requests or len(prompts)
    probe = open_meter(meter_spec)  # fail early on a bad meter, and learn its label
    from irene.serve.load import energy_label

    label = energy_label(probe)
    if probe is not None:
        probe.close()
    results = [bench_runtime(model, name, prompts, repeats=repeats, requests=count,
                             concurrency=concurrency, meter_spec=meter_spec, device=device,
                             max_new_tokens=max_new_tokens, threads=threads,
                             startup_timeout_s=startup_timeout_s, on_request=on_request)
               for name in runtimes]
    return {
        "kind": "irene-serve-bench", "model": model, "device": device, "repeats": repeats,
        "requests_per_repeat": count, "concurrency": concurrency, "prompts": len(prompts),
        "max_new_tokens": max_new_tokens, "meter": meter_spec, "energy": label,
        "threads": threads, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runtimes": [runtime_row(r) for r in results],
        "stats": {"j_per_request": compare_groups({r.runtime: r.request_j for r in results
                                                   if r.ok}),
                  "latency_s": compare_groups({r.runtime: r.latency_s for r in results
                                               if r.ok})},
        "samples": {r.runtime: {"j_per_request": r.request_j, "latency_s": r.latency_s,
                                "ttft_s": r.ttft_s} for r in results if r.ok},
    }


def runtime_row(result: RuntimeResult) -> dict[str, Any]:
    row: dict[str, Any] = {"runtime": result.runtime, "engine": result.engine,
                           "ok": result.ok, "error": result.error,
                           "repeats": len(result.summaries),
                           "failed_requests": result.failed_requests}
    row.update({key: result.median(key) for key in METRICS})
    return row


def best_runtime(bench: dict[str, Any]) -> str:
    """The runtime with the lowest median J/request among those that ran ("-" when none did)."""
    ran = [r for r in bench["runtimes"] if r["ok"] and r.get("j_per_request") is not None]
    return min(ran, key=lambda r: r["j_per_request"])["runtime"] if ran else "-"


# --------------------------------------------------------------------------------------------
# reporting


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def table_rows(bench: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the per-runtime table (medians over repeats)."""
    header = ["runtime", *METRICS.values()]
    rows = []
    for row in bench["runtimes"]:
        if not row["ok"]:
            rows.append([row["runtime"], f"not run: {row['error']}"] + [""] * (len(METRICS) - 1))
            continue
        rows.append([row["runtime"], *(_fmt(row[key]) for key in METRICS)])
    return header, rows


def markdown_table(bench: dict[str, Any]) -> str:
    header, rows = table_rows(bench)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def stats_lines(bench: dict[str, Any], key: str = "j_per_request") -> list[str]:
    """The verdict in words: Kruskal-Wallis, then each pair (Holm-corrected)."""
    verdict = bench["stats"][key]
    if verdict["kruskal"] is None:
        return [f"{key}: fewer than two runtimes with >= 2 requests: no test"]
    kw = verdict["kruskal"]
    lines = [f"{key}: Kruskal-Wallis H = {kw['h']:.3g}, p = {kw['p']:.3g} "
             f"(n = {', '.join(f'{k} {v}' for k, v in verdict['groups'].items())})"]
    for pair in verdict["pairs"]:
        mark = "significant" if pair["significant"] else "not significant"
        lines.append(f"  {pair['a']} vs {pair['b']}: U = {pair['u']:.4g}, p(Holm) = "
                     f"{pair['p_holm']:.3g} ({mark}), Cliff's delta = "
                     f"{pair['cliffs_delta']:+.3f} ({pair['magnitude']})")
    return lines


def describe(bench: dict[str, Any]) -> str:
    return (f"{bench['model']} on {bench['device']}: {bench['requests_per_repeat']} requests x "
            f"{bench['repeats']} repeats per runtime, concurrency {bench['concurrency']}, "
            f"{bench['max_new_tokens']} new tokens; energy: {bench['meter']} "
            f"({bench['energy']})")


def plot_serve_bench(bench: dict[str, Any], path: str | os.PathLike) -> Path:
    """Box plots of J/request and latency per runtime (per-request values, all repeats)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from irene.files import atomic_write

    samples = bench["samples"]
    names = list(samples)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "j_per_request", f"J/request ({bench['energy']})"),
                           (axes[1], "latency_s", "latency (s)")):
        data = [samples[n][key] for n in names]
        if any(data):
            ax.boxplot(data, tick_labels=names)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(describe(bench), fontsize=8)
    fig.tight_layout()
    target = Path(path)
    fmt = "svg" if target.suffix.lower() == ".svg" else "png"
    with atomic_write(target, "wb") as handle:
        fig.savefig(handle, format=fmt, dpi=110)
    plt.close(fig)
    return target


def serve_bench_section_html(bench: dict[str, Any]) -> str:
    """An HTML section: the table, the verdict and the energy label (a report section)."""
    import html

    header, rows = table_rows(bench)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
                   for cells in rows)
    label = bench["energy"]
    warn = ""
    if label != "measured":
        warn = (f"<p class=note><b>Energies are {html.escape(label)}</b> (meter "
                f"{html.escape(bench['meter'])}).</p>")
    verdict = "".join(f"<li>{html.escape(line.strip())}</li>"
                      for key in ("j_per_request", "latency_s") for line in stats_lines(bench, key))
    return (f"<section id=serve-bench><h2>Serving API: runtimes side by side</h2>"
            f"<p>{html.escape(describe(bench))}. Medians over repeats; energy per request is "
            "each metered interval split among the requests active in it by active time.</p>"
            f"{warn}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<h3>Statistics (Kruskal-Wallis; Mann-Whitney U, Holm-corrected; Cliff's delta)"
            f"</h3><ul>{verdict}</ul></section>")


def write_serve_bench_page(bench: dict[str, Any], path: str | os.PathLike) -> Path:
    from irene.files import atomic_write
    from irene.report.html import static_page

    page = static_page("irene serve-bench", serve_bench_section_html(bench),
                       subtitle=describe(bench))
    with atomic_write(path) as handle:
        handle.write(page)
    return Path(path)
