"""``irene models``: the built-in architectures (built without downloading anything)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="list the built-in model architectures",
                            description="List the built-in architectures that `irene trace` "
                                        "builds without downloading anything.")
    models.add_argument("--no-params", action="store_true",
                        help="do not count parameters (faster)")
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irene.tracing.registry import ALIASES, BUILTIN_MODELS, parameter_count

    rows = []
    for name, factory in BUILTIN_MODELS.items():
        config = factory()
        params = "" if args.no_params else f"{parameter_count(config) / 1e6:,.1f}M"
        aliases = ", ".join(a for a, target in ALIASES.items() if target == name)
        rows.append((name, config.model_type, params, aliases))
    width = max(len(r[0]) for r in rows)
    print(f"{'MODEL':<{width}}  {'TYPE':<11} {'PARAMS':>9}  ALIASES")
    for name, model_type, params, aliases in rows:
        print(f"{name:<{width}}  {model_type:<11} {params:>9}  {aliases}")
    return 0
