"""Benchmark of the measurement protocol (no hardware needed: simulated and fake meters).

Prints:

1. the protocol's overhead per window: wall time that ``measure_callable`` spends per run beyond
   the measured calls (a no-op callable, one call per run, so everything is overhead), for no
   meter, the simulated meter, the simulated meter with the utilisation sampler, and the RAPL
   meter reading a fake powercap tree (file reads as on real sysfs);
2. how many node measurements a full bert-base-uncased tree needs with and without dedup
   (traced by ``irene.tracing.trace_model``, timing off; a node is replayed once per distinct
   ``signature``), and the measuring time that implies: the default protocol's measured wall
   time for one 1 ms node (median of 3), without a meter and with a 0.5 s window (NVML's);
3. end to end: the wall time of tracing and replaying every node of the model with the
   simulated meter (smaller input shape), dedup on and off, and the tracer's replay counts.

Every figure is the median of several repetitions. Usage::

    python3 benchmarks/measure_bench.py [--repeats 7] [--windows 200] [--model bert-base-uncased]
                                        [--e2e-repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from irene.measure import Meter, Protocol, Sampler, SimulatedMeter, measure_callable
from irene.measure.rapl import RaplMeter


def _noop() -> None:
    return None


def fake_powercap(root: Path, sockets: int = 2) -> Path:
    """A powercap tree like a two-socket server's (package + dram per socket)."""
    for s in range(sockets):
        for zone, name in [(f"intel-rapl:{s}", f"package-{s}"),
                           (f"intel-rapl:{s}/intel-rapl:{s}:0", "dram")]:
            d = root / zone
            d.mkdir(parents=True)
            (d / "name").write_text(name + "\n")
            (d / "energy_uj").write_text("123456789\n")
            (d / "max_energy_range_uj").write_text("262143328850\n")
    return root


def overhead_per_window(make_meter: Callable[[], Meter | None], sampler: Sampler | None,
                        windows: int, repeats: int) -> float:
    """Median (over ``repeats``) wall time per window (s) of the protocol around a no-op."""
    protocol = Protocol(warmup=0, runs=windows, min_run_seconds=0.0)
    meter = make_meter()
    if meter is not None:
        meter.min_window_s = 0.0  # one call per window: the window itself is what is timed
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        measure_callable(_noop, meter=meter, protocol=protocol, sampler=sampler)
        samples.append((time.perf_counter() - t0) / windows)
    return statistics.median(samples)


def print_overheads(windows: int, repeats: int) -> None:
    print(f"protocol overhead per window (median of {repeats} x {windows} windows, no-op call)")
    with tempfile.TemporaryDirectory() as tmp:
        root = fake_powercap(Path(tmp) / "powercap")
        cases: list[tuple[str, Callable[[], Meter | None], Sampler | None]] = [
            ("no meter (timing only)", lambda: None, None),
            ("simulated meter", SimulatedMeter, None),
            ("simulated meter + sampler (psutil, 20 Hz)", SimulatedMeter, Sampler()),
            ("rapl meter, fake sysfs (2 sockets x pkg+dram)",
             lambda: RaplMeter(root, hwmon_root=Path(tmp) / "none"), None),
        ]
        for label, make, sampler in cases:
            s = overhead_per_window(make, sampler, windows, repeats)
            print(f"  {label:<48} {s * 1e6:9.1f} us")


def busy(seconds: float) -> Callable[[], None]:
    """A callable that keeps the CPU busy for about ``seconds``."""
    def call() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    return call


def node_time(meter_window_s: float, call_s: float, repeats: int) -> float:
    """Median wall time (s) of the default protocol for one node whose call lasts ``call_s``,
    with a simulated meter whose minimum window is ``meter_window_s``."""
    meter = SimulatedMeter(min_window_s=meter_window_s)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        measure_callable(busy(call_s), meter=meter, protocol=Protocol())
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def print_node_counts(model: str, batch: int, seq: int, repeats: int) -> None:
    try:
        from irene.tracing import trace_model
    except ImportError as exc:
        print(f"node counts: skipped, the tracer is not available ({exc})")
        return
    t0 = time.perf_counter()
    tree = trace_model(model, batch, seq, timing=False)
    traced_s = time.perf_counter() - t0
    nodes = list(tree.nodes())
    signatures = [n.extra.get("signature") for n in nodes]
    replayable = [s for s in signatures if s is not None]
    with_dedup = len(set(replayable)) + signatures.count(None)
    by_type: dict[str, int] = {}
    for n in nodes:
        by_type[n.type] = by_type.get(n.type, 0) + 1
    print(f"\nnode measurements for a full {model} tree (batch {batch}, seq {seq}; traced in "
          f"{traced_s:.1f} s)")
    print(f"  nodes: {len(nodes)} ({', '.join(f'{k} {v}' for k, v in sorted(by_type.items()))}),"
          f" {len(replayable)} with a signature")
    print(f"  measurements without dedup: {len(nodes)}")
    print(f"  measurements with dedup:    {with_dedup}  "
          f"({len(nodes) / max(with_dedup, 1):.1f}x fewer)")
    for window_s, label in [(0.0, "no meter (timing only, 0.02 s runs)"),
                            (0.5, "0.5 s meter window (NVML counter)")]:
        per_node = node_time(window_s, 0.001, repeats)
        print(f"  default protocol, {label}: {per_node:.2f} s per 1 ms node -> "
              f"{len(nodes) * per_node / 60:.1f} min without dedup, "
              f"{with_dedup * per_node / 60:.1f} min with dedup")


def print_end_to_end(model: str, batch: int, seq: int, repeats: int) -> None:
    """Real replays of every node with the simulated meter, dedup on and off."""
    try:
        from irene.tracing import trace_model
    except ImportError as exc:
        print(f"end to end: skipped, the tracer is not available ({exc})")
        return
    print(f"\nend to end: trace_model({model!r}, {batch}, {seq}, meter=simulated), default "
          f"protocol, median of {repeats}")
    for dedup in (True, False):
        walls, stats = [], {}
        for _ in range(repeats):
            t0 = time.perf_counter()
            tree = trace_model(model, batch, seq, meter=SimulatedMeter(),
                               protocol=Protocol(dedup=dedup))
            walls.append(time.perf_counter() - t0)
            stats = tree.meta.get("dedup", {})
            assert tree.meta.get("meter") == "simulated"
        print(f"  dedup {'on ' if dedup else 'off'}: {statistics.median(walls):6.1f} s wall, "
              f"replays {stats}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--model", default="bert-base-uncased")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--e2e-repeats", type=int, default=3,
                        help="repetitions of the end-to-end trace (0 to skip)")
    parser.add_argument("--e2e-batch-size", type=int, default=1)
    parser.add_argument("--e2e-seq-len", type=int, default=32)
    args = parser.parse_args()
    print_overheads(args.windows, args.repeats)
    print_node_counts(args.model, args.batch_size, args.seq_len, 3)
    if args.e2e_repeats > 0:
        print_end_to_end(args.model, args.e2e_batch_size, args.e2e_seq_len, args.e2e_repeats)


if __name__ == "__main__":
    main()
