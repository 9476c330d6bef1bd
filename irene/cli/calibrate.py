"""``irene calibrate MODEL_DIR MEASURED OUT_DIR``: adapt a predictor to other hardware."""

from __future__ import annotations

import argparse
from pathlib import Path

from irene.cli import UserError
from irene.cli.options import add_json_option, input_paths, print_result, read_input_trees


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="adapt a trained predictor to other hardware from a few measured trees",
        description="Refit a few parameters of the predictor in MODEL_DIR (three factors on "
                    "the per-call, per-FLOP and per-byte energy of every leaf, or a power-law "
                    "correction per primitive type; a factor on the module overhead) to the "
                    "trees in MEASURED, measured on the new hardware (any models), and write "
                    "the calibrated predictor to OUT_DIR. It records what it was trained and "
                    "calibrated on. A calibration that does not lower the model-level error of "
                    "its own calibration trees is refused (exit 2, nothing written).")
    p.add_argument("model_dir", help="a predictor written by 'irene train'")
    p.add_argument("measured", help="JSONL trees with ground_truth_energy from the new hardware")
    p.add_argument("--form", choices=("auto", "terms", "power_law"), default="auto",
                   help="terms: three factors on every leaf's per-call, per-FLOP and per-byte "
                        "energy (structure predictors with physical or linear leaves); "
                        "power_law: a power-law correction per primitive type; auto (default): "
                        "terms where the predictor has them")
    p.add_argument("out_dir", help="directory for the calibrated predictor (new, empty, or an "
                                   "earlier predictor)")
    add_json_option(p, quiet="the model-level error % on the calibration trees after calibrating")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from irene.evaluation import percentage_errors
    from irene.model import load_predictor
    from irene.model.calibrate import CalibrationRefused, calibrate, check_improves
    from irene.model.persist import check_replaceable

    if Path(args.out_dir).resolve() == Path(args.model_dir).resolve():
        raise UserError(f"{args.out_dir}: is the predictor being calibrated; write the "
                        "calibrated one to another directory")
    from irene.files import guard_inside

    guard_inside(args.out_dir, input_paths([args.measured]))
    check_replaceable(args.out_dir)
    base = load_predictor(args.model_dir)
    if args.form == "terms" and not getattr(base, "term_scalable", lambda: False)():
        raise UserError(f"--form terms: the predictor in {args.model_dir} has no separate "
                        "per-call, per-FLOP and per-byte leaf terms; use --form power_law")
    trees = read_input_trees(args.measured)
    try:
        calibrated = calibrate(base, trees, form=args.form)
    except ValueError as exc:
        raise UserError(f"{args.measured}: {exc}") from exc
    before = percentage_errors(trees, base.predict(trees))
    after = percentage_errors(trees, calibrated.predict(trees))
    try:
        check_improves(before, after)
    except CalibrationRefused as exc:
        raise UserError(f"{args.measured}: {exc}") from exc
    calibrated.save(args.out_dir)
    cal = calibrated.state_.calibration
    result = {"model_dir": args.model_dir, "out_dir": args.out_dir, "trees": len(trees),
              "calibrated_on": cal.calibrated_on.hardware_text(),
              "overhead_factor": cal.overhead_factor,
              "error_before_pct": before, "error_after_pct": after}
    if print_result(args, result, float(after["model"])):
        return 0
    print(f"calibrated {args.model_dir} (trained on {base.training_data.hardware_text()}) to "
          f"{cal.calibrated_on.hardware_text()} from {len(trees)} trees: "
          + (f"{len(cal.leaf_types) - 1} primitive types with their own correction"
             if cal.term_log_scale is None else
             "energy per call x {:.3f}, per FLOP x {:.3f}, per byte x {:.3f}".format(
                 *np.exp(cal.term_log_scale)))
          + f", overhead x {cal.overhead_factor:.3f}")
    print("error on the calibration trees %: " + ", ".join(
        f"{k} {before[k]:.2f} -> {after[k]:.2f}" for k in before))
    print(f"calibrated predictor written to {args.out_dir}")
    return 0
