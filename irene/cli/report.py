"""``irene report TREES... -o report.html``: one self-contained HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from irene.cli import UserError
from irene.cli.options import (
    add_energy_option,
    add_force_option,
    add_json_option,
    input_paths,
    positive_int,
    print_result,
    print_synthetic_line,
    read_many,
    read_user_json,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write a self-contained HTML report",
        description="Write one HTML file (no network needed to open it) with an interactive "
                    "breakdown of every tree, the share per primitive type, and predicted vs "
                    "measured tables where the trees have ground truth.")
    p.add_argument("trees", nargs="+", metavar="TREES.jsonl",
                   help="trees files, directories of them, or a built-in data set")
    p.add_argument("-o", "--output", default="report.html", metavar="REPORT.html",
                   help="where to write the page (default report.html)")
    p.add_argument("--title", help="the page title")
    p.add_argument("--top", type=positive_int, default=10,
                   help="how many top primitives and modules to list (default 10)")
    p.add_argument("--bench", action="append", default=[], metavar="RUN.json",
                   help="also show an `irene bench ... --json > RUN.json` comparison "
                        "(repeatable)")
    p.add_argument("--serve-bench", action="append", default=[], metavar="RUN.json",
                   help="also show an `irene serve-bench ... --json > RUN.json` comparison "
                        "(repeatable)")
    add_energy_option(p)
    add_force_option(p)
    add_json_option(p, quiet="the path of the page written")
    p.set_defaults(func=run)


def bench_sections(paths: list[str]) -> list[str]:
    """The HTML section of each saved ``irene bench --json`` run (UserError naming the file)."""
    from irene.bench.report import bench_section_html
    from irene.bench.run import BenchRun

    sections = []
    for path in paths:
        data = read_user_json(path)
        try:
            run = BenchRun.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{path}: {exc}") from exc
        sections.append(bench_section_html(run))
    return sections


def serve_bench_sections(paths: list[str]) -> list[str]:
    """The HTML section of each saved ``irene serve-bench --json`` run (UserError naming the
    file)."""
    from irene.serve.bench import serve_bench_section_html

    sections = []
    for path in paths:
        data = read_user_json(path)
        if not isinstance(data, dict) or data.get("kind") != "irene-serve-bench":
            raise UserError(f"{path}: field \"kind\": not an `irene serve-bench --json` run")
        try:
            sections.append(serve_bench_section_html(data))
        except (KeyError, TypeError) as exc:
            raise UserError(f"{path}: field {exc}: missing or malformed") from exc
    return sections


def run(args: argparse.Namespace) -> int:
    from irene.files import guard_output
    from irene.report.html import write_report

    guard_output(args.output, kind="html",
                 inputs=[*input_paths(args.trees), *args.bench, *args.serve_bench],
                 force=args.force)
    sections = bench_sections(args.bench) + serve_bench_sections(args.serve_bench)
    trees = read_many(args.trees)
    print_synthetic_line(trees)
    try:
        write_report(trees, args.output, title=args.title, source=args.energy, top=args.top,
                     origin=", ".join(args.trees), sections=sections)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    size = Path(args.output).stat().st_size
    if print_result(args, {"output": args.output, "trees": len(trees), "bytes": size},
                    args.output):
        return 0
    print(f"wrote {args.output} ({len(trees)} trees, {size / 1024:.0f} KiB); open it in any "
          f"browser: {Path(args.output).resolve().as_uri()}")
    return 0
