"""Subcommands train, predict, evaluate and crossvalidate (IrEne's positional arguments)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from irene.cli import UserError
from irene.datasets import SYNTHETIC_NOTE, is_synthetic, resolve_dataset
from irene.evaluation import NODE_TYPES, leave_one_model_out, percentage_errors
from irene.tree import Tree, atomic_write, read_trees, write_trees


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="learn a predictor from trees with measured energy")
    p.add_argument("data", help="JSONL trees with ground_truth_energy (or a built-in data set)")
    p.add_argument("model_dir", help="directory to write the predictor to")
    _add_config_options(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("predict", help="predict the energy of every node of trees")
    p.add_argument("data", help="JSONL trees (features needed, energy not)")
    p.add_argument("out", help="JSONL output: the trees with predicted_energy on every node")
    p.add_argument("model_dir", help="a predictor written by 'irene train'")
    p.set_defaults(func=run_predict)

    p = sub.add_parser("evaluate", help="mean absolute percentage error per node type")
    p.add_argument("gold", help="JSONL trees with ground_truth_energy")
    p.add_argument("pred", help="JSONL trees with predicted_energy (same trees)")
    p.add_argument("--node_types", "--node-types", default=",".join(NODE_TYPES),
                   help="comma-separated node types (default: ml,module,model)")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("crossvalidate", help="leave-one-model-out cross-validation")
    p.add_argument("data", help="JSONL trees with ground_truth_energy (or a built-in data set)")
    p.add_argument("out_dir", help="directory for crossvalidation.json, predictions, figures")
    _add_config_options(p)
    p.add_argument("--no-plots", action="store_true", help="do not draw figures")
    p.set_defaults(func=run_crossvalidate)


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config_filepath", "--config", dest="config_filepath",
                   help="JSON configuration (e.g. configs/irene.json); default: irene's best")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one configuration key (value parsed as JSON), repeatable")


def load_config(path: str | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The regressor configuration from a JSON file and KEY=VALUE overrides."""
    from irene.model.regressor import DEFAULT_CONFIG

    config: dict[str, Any] = {}
    if path:
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"{path}: cannot read ({exc.strerror})") from exc
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from exc
        if not isinstance(config, dict):
            raise UserError(f"{path}: a configuration must be a JSON object")
        config = {k: v for k, v in config.items() if not k.startswith("_")}  # comments
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise UserError(f"{path or '--set'}: unknown configuration key(s) {unknown}; "
                        f"known: {sorted(DEFAULT_CONFIG)}")
    return config


def _make_regressor(config: dict[str, Any]):
    from irene.model import IreneRegressor

    try:
        return IreneRegressor(**config)
    except (TypeError, ValueError) as exc:
        raise UserError(f"configuration: {exc}") from exc


def _read(data: str) -> list[Tree]:
    trees = read_trees(resolve_dataset(data))
    if is_synthetic(trees):
        print(SYNTHETIC_NOTE, file=sys.stderr)
    return trees


def run_train(args: argparse.Namespace) -> int:
    config = load_config(args.config_filepath, args.set)
    trees = _read(args.data)
    start = time.perf_counter()
    model = _make_regressor(config).fit(trees, progress=True)
    model.state_["training_data"] = {
        "source": str(args.data), "trees": len(trees),
        "models": sorted({t.model_name for t in trees}), "synthetic": is_synthetic(trees),
        "meta": {k: v for k, v in trees[0].meta.items() if k in ("device", "meter", "dtype")},
    }
    model.save(args.model_dir)
    fit_s = time.perf_counter() - start
    errors = percentage_errors(trees, model.predict(trees))
    print(f"trained on {len(trees)} trees ({len(model.state_['training_data']['models'])} "
          f"models) in {fit_s:.1f} s; features: {', '.join(model.required_features())}")
    print("training-set error %: " + ", ".join(f"{k} {v:.2f}" for k, v in errors.items()))
    print(f"predictor written to {args.model_dir}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from irene.model import IreneRegressor, ModelFormatError

    try:
        model = IreneRegressor.load(args.model_dir)
    except ModelFormatError as exc:
        raise UserError(str(exc)) from exc
    trees = _read(args.data)
    write_trees(model.predict(trees), args.out)
    print(f"wrote {len(trees)} trees with predicted_energy to {args.out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    node_types = [t.strip() for t in args.node_types.split(",") if t.strip()]
    bad = [t for t in node_types if t not in NODE_TYPES]
    if bad or not node_types:
        raise UserError(f"--node_types: unknown node type(s) {bad}; choose from {NODE_TYPES}")
    gold, pred = _read(args.gold), read_trees(args.pred)
    print(json.dumps(percentage_errors(gold, pred, node_types), indent=2))
    return 0


def run_crossvalidate(args: argparse.Namespace) -> int:
    config = load_config(args.config_filepath, args.set)
    _make_regressor(config)  # fail on a bad configuration before any work
    trees = _read(args.data)
    synthetic = is_synthetic(trees)
    start = time.perf_counter()
    try:
        cv = leave_one_model_out(trees, lambda: _make_regressor(config), progress=True)
    except ValueError as exc:
        raise UserError(f"{args.data}: {exc}") from exc
    wall = time.perf_counter() - start
    out = Path(args.out_dir)
    for name, predicted in cv.predictions.items():
        write_trees(predicted, out / "predictions" / f"{name.replace('/', '__')}.jsonl")
    result = {**cv.to_dict(), "data": str(args.data), "synthetic_data": synthetic,
              "config": _make_regressor(config).get_params(), "wall_seconds": round(wall, 3)}
    with atomic_write(out / "crossvalidation.json") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    if synthetic:
        print("SYNTHETIC DATA — leave-one-model-out mean absolute percentage error:")
    else:
        print("leave-one-model-out mean absolute percentage error:")
    print(cv.table())
    print(f"({wall:.1f} s) results in {out / 'crossvalidation.json'}, "
          f"predictions in {out / 'predictions'}")
    if not args.no_plots:
        _plot(trees, cv, out)
    return 0


def _plot(trees: list[Tree], cv, out: Path) -> None:
    from irene.report.plots import plot_crossvalidation

    predicted = [t for fold in cv.predictions.values() for t in fold]
    paths = plot_crossvalidation(trees, predicted, out / "figures")
    if paths:
        print(f"figures in {out / 'figures'}")
