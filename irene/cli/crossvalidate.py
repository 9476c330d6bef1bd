"""``irene crossvalidate DATA OUT_DIR``: leave-one-model-out cross-validation."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from irene.cli import UserError
from irene.cli.options import (
    add_config_options,
    add_json_option,
    input_paths,
    load_config,
    print_result,
    read_input_trees,
)

if TYPE_CHECKING:
    from irene.evaluation import CrossValidation
    from irene.tree import Tree

RESULT_FILE = "crossvalidation.json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crossvalidate", help="leave-one-model-out cross-validation",
                       description="Train on all models but one and predict the one left out, "
                                   "for every model; write the table, each fold's predictions "
                                   "and figures to OUT_DIR (replaced as one unit).")
    p.add_argument("data", help="JSONL trees with ground_truth_energy (or a built-in data set)")
    p.add_argument("out_dir", help="directory for crossvalidation.json, predictions, figures")
    add_config_options(p)
    p.add_argument("--no-plots", action="store_true", help="do not draw figures")
    add_json_option(p, quiet="the overall model-level MAPE %")
    p.set_defaults(func=run)


def is_crossvalidation_output(directory: Path) -> bool:
    """Whether ``directory`` holds an earlier ``irene crossvalidate`` output."""
    return (directory / RESULT_FILE).is_file()


def run(args: argparse.Namespace) -> int:
    from irene.datasets import is_synthetic
    from irene.evaluation import leave_one_model_out
    from irene.files import check_replaceable_dir, directory_unit, guard_inside
    from irene.model import make_predictor
    from irene.tree import atomic_write, write_trees

    estimator, config = load_config(args.config_filepath, args.set, args.estimator)
    guard_inside(args.out_dir, input_paths([args.data]))
    check_replaceable_dir(args.out_dir, owns=is_crossvalidation_output)
    trees = read_input_trees(args.data)
    synthetic = is_synthetic(trees)
    start = time.perf_counter()
    try:
        cv = leave_one_model_out(trees, lambda: make_predictor(estimator, **config),
                                 progress=True)
    except ValueError as exc:
        raise UserError(f"{args.data}: {exc}") from exc
    wall = time.perf_counter() - start
    result = {**cv.to_dict(), "data": str(args.data), "synthetic_data": synthetic,
              "estimator": estimator,
              "config": make_predictor(estimator, **config).get_params(),
              "wall_seconds": round(wall, 3)}
    out = Path(args.out_dir)
    with directory_unit(out, owns=is_crossvalidation_output) as staging:
        def write_results() -> None:
            for name, predicted in cv.predictions.items():
                write_trees(predicted,
                            staging / "predictions" / f"{name.replace('/', '__')}.jsonl")
            with atomic_write(staging / RESULT_FILE) as handle:
                json.dump(result, handle, indent=2)
                handle.write("\n")

        if args.no_plots:
            write_results()
        else:
            _plot(trees, cv, staging, write_results)
    if print_result(args, result, float(cv.overall["model"])):
        return 0
    print(("SYNTHETIC DATA — " if synthetic else "")
          + "leave-one-model-out mean absolute percentage error:")
    print(cv.table())
    print(f"({wall:.1f} s) results in {out / RESULT_FILE}, predictions in {out / 'predictions'}"
          + ("" if args.no_plots else f", figures in {out / 'figures'}"))
    return 0


def _plot(trees: list[Tree], cv: CrossValidation, out: Path, work: Callable[[], None]) -> None:
    draw_figures_alongside(cv.held_out(trees), out / "figures", work)


def draw_figures_alongside(trees: list[Tree], directory: Path,
                           work: Callable[[], None]) -> None:
    """Run ``work`` and draw the cross-validation figures of ``trees`` (which carry both
    energies) into ``directory``. Where processes can fork (Linux, more than one CPU usable),
    a child process draws half of the figures meanwhile (matplotlib is imported once, before);
    the files are the same either way. A failure in either process raises here, after both have
    finished."""
    from irene.report.plots import plot_crossvalidation_merged

    if not (sys.platform.startswith("linux") and len(os.sched_getaffinity(0)) > 1):
        work()
        plot_crossvalidation_merged(trees, directory)
        return
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: draw the second half, report a failure through the pipe, exit
        os.close(read_end)
        _draw_in_child(lambda: plot_crossvalidation_merged(trees, directory, part=(1, 2)),
                       write_end)
    os.close(write_end)
    try:
        work()
        plot_crossvalidation_merged(trees, directory, part=(0, 2))
    finally:
        with os.fdopen(read_end, "rb") as pipe:
            failure = pipe.read().decode(errors="replace")
        _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError("drawing the figures failed in the child process "
                           f"(wait status {status}):\n{failure}")


def _draw_in_child(draw: Callable[[], object], pipe: int) -> NoReturn:
    """The child's side of :func:`draw_figures_alongside`: ``draw``, then exit (status 0, or 1
    with the traceback written to ``pipe``); never returns."""
    import signal
    import traceback

    status = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)  # the parent cleans up; the child just stops
        draw()
        status = 0
    except BaseException:  # noqa: BLE001 (handed to the parent, which raises it)
        os.write(pipe, traceback.format_exc().encode())
    finally:
        os._exit(status)
