"""``irene train DATA MODEL_DIR``: learn a predictor from trees with measured energy."""

from __future__ import annotations

import argparse
import time

from irene.cli.options import (
    add_config_options,
    add_json_option,
    load_config,
    print_result,
    read_input_trees,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="learn a predictor from trees with measured energy",
                       description="Fit a predictor to trees with ground_truth_energy and write "
                                   "it to MODEL_DIR (config.json + tensors.safetensors).")
    p.add_argument("data", help="JSONL trees with ground_truth_energy (or a built-in data set)")
    p.add_argument("model_dir", help="directory to write the predictor to (new, empty, or an "
                                     "earlier predictor)")
    add_config_options(p)
    add_json_option(p, quiet="the training-set MAPE % at model level")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irene.evaluation import percentage_errors
    from irene.model import make_predictor
    from irene.model.persist import check_replaceable

    estimator, config = load_config(args.config_filepath, args.set, args.estimator)
    check_replaceable(args.model_dir)  # fail before the work, not after it
    trees = read_input_trees(args.data)
    start = time.perf_counter()
    model = make_predictor(estimator, **config).fit(trees, progress=True)
    fit_s = time.perf_counter() - start
    errors = percentage_errors(trees, model.predict(trees))  # checked before the swap: a
    model.save(args.model_dir)  # model whose predictions fail never replaces an earlier one
    data = model.training_data
    result = {"model_dir": args.model_dir, "predictor": repr(model), "trees": data.trees,
              "models": list(data.models), "schema": model.schema,
              "features": model.required_features(), "fit_seconds": round(fit_s, 3),
              "energy_for": data.hardware_text(), "training_errors_pct": errors}
    if print_result(args, result, float(errors["model"])):
        return 0
    print(f"trained {model!r} on {data.trees} trees ({len(data.models)} models, schema "
          f"{model.schema}) in {fit_s:.1f} s; features: {', '.join(model.required_features())}")
    print(f"energies are for: {data.hardware_text()}")
    print("training-set error %: " + ", ".join(f"{k} {v:.2f}" for k, v in errors.items()))
    print(f"predictor written to {args.model_dir}")
    return 0
