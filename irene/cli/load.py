"""``irene load``: send prompts to an ``irene serve`` endpoint, energy attributed per request."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from irene.cli import UserError
from irene.cli.options import add_json_option, positive_int, positive_number, print_result

METER_HELP = ("energy meter read over the whole run: nvml, rapl, wattmeter:LOG.csv, simulated "
              "(tests), cpu-model[:TDP_W] (estimated, not measured: TDP x CPU utilisation of "
              "the server process; the server must run on this machine), or none "
              "(default: %(default)s)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    load = sub.add_parser(
        "load", help="send prompts to an `irene serve` endpoint and attribute energy per request",
        description=textwrap.fill(
            "Send N requests to the server at URL (C at a time, optionally at R per second), "
            "record each request's start, first token and end, read the meter over the whole "
            "run and split each interval's energy among the requests active in it (by active "
            "time; idle time reported apart). Writes RUN_DIR/requests.csv, requests.jsonl, "
            "intervals.csv and summary.json. Needs the serve extra.", width=90))
    load.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000")
    add_load_arguments(load)
    load.add_argument("-o", "--output", metavar="RUN_DIR", required=True,
                      help="directory for the run's files (new, empty, or an earlier run's)")
    add_json_option(load, quiet="the run's total energy in J (measured or estimated)")
    load.set_defaults(func=run_load_command)


def add_load_arguments(parser: argparse.ArgumentParser, *, default_meter: str = "none") -> None:
    """The load options shared with ``irene serve-bench``."""
    parser.add_argument("--prompts", default="humaneval", metavar="FILE",
                        help="humaneval (the 164 shipped HumanEval prompts, default), or a "
                             ".jsonl[.gz] file with a \"prompt\" per line, or a text file with "
                             "one prompt per line")
    parser.add_argument("--limit-prompts", type=positive_int, default=None, metavar="K",
                        help="use the first K prompts only")
    parser.add_argument("--requests", type=positive_int, default=None, metavar="N",
                        help="requests to send, cycling through the prompts (default: one per "
                             "prompt)")
    parser.add_argument("--concurrency", type=positive_int, default=1, metavar="C",
                        help="requests in flight at most (default %(default)s)")
    parser.add_argument("--rate", type=positive_number, default=None, metavar="R",
                        help="send request i at i/R seconds at the earliest (default: as fast "
                             "as the concurrency allows)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=None, metavar="N",
                        help="tokens per request (default: the server's)")
    parser.add_argument("--timeout", type=positive_number, default=600.0, metavar="SECONDS",
                        help="per-request timeout (default %(default)s)")
    parser.add_argument("--meter", default=default_meter, metavar="SPEC", help=METER_HELP)


def read_prompt_arg(args: argparse.Namespace) -> list[Any]:
    from irene.serve.prompts import PromptFileError, read_prompts

    try:
        return read_prompts(args.prompts, limit=args.limit_prompts)
    except PromptFileError as exc:
        raise UserError(f"--prompts: {exc}") from exc


def open_meter_arg(spec: str) -> Any:
    from irene.measure import MeterUnavailable, open_meter

    try:
        return open_meter(spec)
    except MeterUnavailable as exc:
        raise UserError(f"--meter: {exc}") from exc


def progress_bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="req", file=sys.stderr, leave=False)


def _check_output(path: str) -> None:
    from irene.files import check_replaceable_dir
    from irene.serve.load import owns_run_dir

    check_replaceable_dir(path, owns=owns_run_dir)


def run_load_command(args: argparse.Namespace) -> int:
    from irene.serve.load import LoadError, run_load, write_run

    _check_output(args.output)
    prompts = read_prompt_arg(args)
    meter = open_meter_arg(args.meter)
    count = args.requests or len(prompts)
    bar = progress_bar(count, "load")
    try:
        run = run_load(args.url, prompts, requests=count, concurrency=args.concurrency,
                       rate=args.rate, meter=meter, max_new_tokens=args.max_new_tokens,
                       timeout_s=args.timeout, on_done=lambda r: bar.update(1))
    except LoadError as exc:
        raise UserError(str(exc)) from exc
    finally:
        bar.close()
        if meter is not None:
            meter.close()
    write_run(run, args.output)
    if not print_result(args, run.summary, float(run.attribution.total_j)):
        print(summary_text(run.summary))
    print(f"wrote {args.output}/requests.csv, requests.jsonl, intervals.csv, summary.json",
          file=sys.stderr)
    return 0 if run.summary["ok"] else 1


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def summary_text(s: dict[str, Any]) -> str:
    """A few lines for the terminal; energies carry their label (measured / estimated)."""
    lines = [f"{s['runtime']} ({s['engine']}): {s['ok']}/{s['requests']} requests ok, "
             f"concurrency {s['concurrency']}, {_num(s['duration_s'], '.2f')} s",
             f"latency p50 {_num(s['latency_p50_s'], '.3f')} s, p95 "
             f"{_num(s['latency_p95_s'], '.3f')} s; first token p50 "
             f"{_num(s['ttft_p50_s'], '.3f')} s; {_num(s['throughput_tok_s'], '.1f')} tokens/s"]
    if s.get("total_j") is not None:
        lines.append(f"energy ({s['meter']}, {s['energy']}): {_num(s['j_per_request'], '.4g')} "
                     f"J/request, {_num(s['j_per_token'], '.4g')} J/token; total "
                     f"{_num(s['total_j'], '.4g')} J of which idle {_num(s['idle_j'], '.4g')} J")
    return "\n".join(lines)
