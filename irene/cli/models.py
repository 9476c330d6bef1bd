"""``irene models``: the built-in architectures (built without downloading anything)."""

from __future__ import annotations

import argparse

from irene.cli.options import add_json_option, print_result


def add_parser(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list the built-in model architectures",
                            description="List the built-in architectures that `irene trace` "
                                        "builds without downloading anything.")
    models.add_argument("--no-params", action="store_true",
                        help="do not count parameters (faster)")
    add_json_option(models, quiet="the number of built-in models")
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irene.tracing.registry import ALIASES, BUILTIN_MODELS, parameter_count

    data = []
    for name, factory in BUILTIN_MODELS.items():
        config = factory()
        data.append({"model": name, "type": config.model_type,
                     "parameters": None if args.no_params else parameter_count(config),
                     "aliases": [a for a, target in ALIASES.items() if target == name]})
    if print_result(args, data, len(data)):
        return 0
    width = max(len(row["model"]) for row in data)
    print(f"{'MODEL':<{width}}  {'TYPE':<11} {'PARAMS':>9}  ALIASES")
    for row in data:
        params = "" if row["parameters"] is None else f"{row['parameters'] / 1e6:,.1f}M"
        print(f"{row['model']:<{width}}  {row['type']:<11} {params:>9}  "
              f"{', '.join(row['aliases'])}")
    return 0
