"""``irene serve-bench``: runtime engines side by side behind the same HTTP API."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from irene.cli import UserError
from irene.cli.load import add_load_arguments, open_meter_arg, progress_bar, read_prompt_arg
from irene.cli.options import add_force_option, add_json_option, positive_int, print_result
from irene.serve import RUNTIMES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve-bench", help="serve a model with each runtime in turn and compare energy and "
                            "latency per request",
        description=textwrap.fill(
            "For each runtime: start `irene serve MODEL --runtime R` on 127.0.0.1 (a free "
            "port), run the load REPEATS times, stop it. Reports per runtime J/request, "
            "J/token, latency p50/p95, time to first token and throughput (medians over "
            "repeats), a Kruskal-Wallis test across runtimes and pairwise Mann-Whitney U "
            "tests with Cliff's delta, Holm-corrected. Needs the serve extra.", width=90))
    p.add_argument("model", metavar="MODEL",
                   help="built-in name (random weights) or a local directory / config.json")
    p.add_argument("--runtimes", default=",".join(RUNTIMES), metavar="R1,R2,..",
                   help="comma-separated runtimes (default: %(default)s)")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="load runs per runtime (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="the servers' threads (default: torch's)")
    p.add_argument("--startup-timeout", type=positive_int, default=900, metavar="SECONDS",
                   help="wait this long for a server to answer (default %(default)s)")
    add_load_arguments(p)
    out = p.add_argument_group("output")
    add_json_option(out, quiet="the runtime with the lowest median J/request")
    out.add_argument("--figure", metavar="FILE.png|.svg",
                     help="box plots of J/request and latency per runtime")
    out.add_argument("--html", metavar="PAGE.html", help="a self-contained HTML page")
    add_force_option(out)
    p.set_defaults(func=run_serve_bench_command)


def parse_runtimes(text: str) -> list[str]:
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in RUNTIMES]
    if not names or unknown:
        raise UserError(f"--runtimes: unknown {', '.join(unknown) or '(none given)'}; choose "
                        f"from {', '.join(RUNTIMES)}")
    return names


def _check_outputs(args: argparse.Namespace) -> None:
    from irene.files import guard_output

    if args.figure and Path(args.figure).suffix.lower() not in (".png", ".svg"):
        raise UserError(f"--figure {args.figure}: give a .png or .svg file")
    if args.figure:
        kind = "svg" if args.figure.lower().endswith(".svg") else "png"
        guard_output(args.figure, kind=kind, force=args.force)
    if args.html:
        guard_output(args.html, kind="html", force=args.force)


def run_serve_bench_command(args: argparse.Namespace) -> int:
    import importlib.util

    from irene.serve.bench import (
        best_runtime,
        describe,
        markdown_table,
        plot_serve_bench,
        run_serve_bench,
        stats_lines,
        write_serve_bench_page,
    )

    missing = [m for m in ("fastapi", "uvicorn", "httpx") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"{', '.join(missing)} not installed: pip install -e '.[serve]' "
                        "(from a checkout)")
    runtimes = parse_runtimes(args.runtimes)
    from irene.cli.bench import check_device

    check_device(args.device)
    _check_outputs(args)
    prompts = read_prompt_arg(args)
    meter = open_meter_arg(args.meter)  # checked here, opened per run by the bench
    if meter is not None:
        meter.close()
    count = args.requests or len(prompts)
    bar = progress_bar(count * args.repeats * len(runtimes), "serve-bench")
    try:
        bench = run_serve_bench(args.model, runtimes, prompts, repeats=args.repeats,
                                requests=count, concurrency=args.concurrency,
                                meter_spec=args.meter, device=args.device,
                                max_new_tokens=args.max_new_tokens or 32,
                                threads=args.threads, startup_timeout_s=args.startup_timeout,
                                on_request=lambda: bar.update(1))
    finally:
        bar.close()
    if not print_result(args, bench, best_runtime(bench)):
        print(describe(bench))
        print(markdown_table(bench))
        for key in ("j_per_request", "latency_s"):
            print("\n".join(stats_lines(bench, key)))
    if args.figure:
        if bench["samples"]:
            print(f"wrote {plot_serve_bench(bench, args.figure)}", file=sys.stderr)
        else:
            print(f"--figure {args.figure}: not written, no runtime ran", file=sys.stderr)
    if args.html:
        print(f"wrote {write_serve_bench_page(bench, args.html)}", file=sys.stderr)
    return 0 if any(r["ok"] for r in bench["runtimes"]) else 1
