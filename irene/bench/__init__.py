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

from irene.bench.fidelity import Fidelity, compare_logits
from irene.bench.run import (
    BENCH_PROTOCOL,
    BenchModelError,
    BenchRun,
    VariantResult,
    load_model,
    run_bench,
)
from irene.bench.variants import (
    DEFAULT_VARIANTS,
    REFERENCE,
    VARIANTS,
    Prepared,
    Variant,
    VariantUnavailable,
    parse_variants,
)

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
