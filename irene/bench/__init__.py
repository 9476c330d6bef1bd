"""Runtime engines and optimisations of one model, measured side by side (``irene bench``).

::

    from irene.bench import run_bench
    run = run_bench("gpt2", ["eager", "compile", "onnxruntime", "int8-dynamic"],
                    batch_size=1, seq_len=128)
    for r in run.results:
        print(r.variant, r.status, r.latency_s, r.energy_j, r.top1_agreement, r.reason)

Variants are in :mod:`irene.bench.variants`, fidelity metrics in :mod:`irene.bench.fidelity`,
the protocol in :mod:`irene.bench.run`, the table, rows, figure and HTML in
:mod:`irene.bench.report`.
"""

_HOMES = {
    "Fidelity": "fidelity", "compare_logits": "fidelity",
    "BENCH_PROTOCOL": "run", "BenchModelError": "run", "BenchRun": "run",
    "VariantResult": "run", "load_model": "run", "run_bench": "run",
    "DEFAULT_VARIANTS": "catalog", "REFERENCE": "catalog", "VARIANTS": "variants",
    "Prepared": "variants", "Variant": "variants", "VariantUnavailable": "variants",
    "parse_variants": "variants",
}


def __getattr__(name: str):
    """The public names, imported on first use (the recipes need torch; the command line's
    list of variants does not: :mod:`irene.bench.catalog`)."""
    import importlib

    if name not in _HOMES:
        raise AttributeError(f"module 'irene.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(f"irene.bench.{_HOMES[name]}"), name)


__all__ = [
    "BENCH_PROTOCOL",
    "DEFAULT_VARIANTS",
    "REFERENCE",
    "VARIANTS",
    "BenchModelError",
    "BenchRun",
    "Fidelity",
    "Prepared",
    "Variant",
    "VariantResult",
    "VariantUnavailable",
    "compare_logits",
    "load_model",
    "parse_variants",
    "run_bench",
]
