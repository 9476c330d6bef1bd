"""The hardware model: GPUs as data, runtime profiles, physics limits of the node model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from irene.hardware import (
    GPUS,
    RUNTIMES,
    GpuSpecError,
    HardwareModel,
    HardwareParams,
    gpu_spec,
    load_gpu_spec,
    module_cost,
    primitive_cost,
    roofline_time,
    runtime_profile,
)
from irene.hardware.runtime import CLASSES


def test_table_covers_the_named_gpus_and_aliases_resolve_explicitly() -> None:
    for name in ("H100", "H100-PCIe", "H200", "B200", "A100", "A100-40GB", "A40", "L40S", "L4",
                 "V100", "RTX-4090", "RTX-3090"):
        assert gpu_spec(name).name == name
    assert gpu_spec("h100").form_factor == "SXM"
    assert gpu_spec("NVIDIA H100 80GB HBM3").name == "H100"
    # the PCIe part never resolves silently to the SXM one
    assert gpu_spec("h100-pcie").name == "H100-PCIe"
    assert gpu_spec("NVIDIA H100 PCIe").name == "H100-PCIe"
    assert gpu_spec("h100-pcie").memory_bandwidth < gpu_spec("h100").memory_bandwidth
    assert gpu_spec("NVIDIA A100-SXM4-40GB").memory_bytes == 40e9
    assert gpu_spec("Tesla V100-SXM2-32GB").name == "V100"
    with pytest.raises(KeyError, match="known: H100, H100-PCIe"):
        gpu_spec("H100-NVL")
    with pytest.raises(KeyError):
        gpu_spec("h100-pcie-typo")


def test_dtype_rates_and_fallbacks() -> None:
    h100, a100, v100 = gpu_spec("H100"), gpu_spec("A100"), gpu_spec("V100")
    assert h100.peak_flops("fp8") == pytest.approx(2 * h100.peak_flops("bf16"), rel=1e-3)
    assert h100.peak_flops("bfloat16") == h100.peak_flops("fp16")
    # no fp8 tensor cores: fp8 weights are multiplied at the bf16 rate
    assert not a100.supports("fp8") and a100.peak_flops("fp8") == a100.peak_flops("bf16")
    assert v100.peak_flops("bf16") == v100.peak_flops("fp32") < v100.peak_flops("fp16")
    for spec in GPUS.values():
        assert spec.idle_power_w < spec.power_limit_w
        assert spec.peak_flops("fp32") <= spec.peak_flops("fp16")


def test_user_gpu_from_json_and_yaml_file(tmp_path) -> None:
    path = tmp_path / "mygpu.json"
    path.write_text(json.dumps({"name": "MyGPU", "tflops": {"bf16": 100, "fp32": 10},
                                "memory_bandwidth_gb_s": 500, "memory_gb": 24,
                                "power_limit_w": 250}))
    spec = load_gpu_spec(path)
    assert spec.name == "MyGPU" and spec.peak_flops("bf16") == 100e12
    assert spec.memory_bandwidth == 500e9 and spec.idle_power_w == 25.0
    yml = tmp_path / "capped.yaml"
    yml.write_text("name: H100 at 500 W\nbase: h100\npower_limit_w: 500\n")
    capped = load_gpu_spec(yml)
    assert capped.power_limit_w == 500
    assert capped.memory_bandwidth == gpu_spec("H100").memory_bandwidth


@pytest.mark.parametrize("text, message", [
    ('{"name": "x", "tflops": {"bf16": 1}, "memory_gb": 1, "power_limit_w": 1}',
     ":1: memory_bandwidth_gb_s: required"),
    ('{"name": "x", "base": "H100",\n "memory_gb": -3}',
     ":2: memory_gb: must be a positive number, got int -3"),
    ('{"name": "x", "base": "H100",\n "wattage": 3}', ":2: wattage: unknown key"),
    ('name: x\nbase: H100\ntflops:\n  bf16: 1\n  fp16: [2]\n',
     ":5: tflops.fp16: must be a positive number, got list"),
    ('{\n\t"name": "x",\n\t"base": "H100",\n\t"power_limit_w": "lots"}',
     ":4: power_limit_w: must be a positive number"),
    ('{"name": "x", "name": "y", "base": "H100"}', ":1: name: duplicate key"),
    ('{"name": "x", "base": "H999"}', ":1: base: unknown GPU"),
    ('{"name": "x", "base": "H100", "tflops": {"fp64x": 1}}', ":1: tflops.fp64x: unknown dtype"),
    ('{"name": "x", "base": "H100", "idle_power_w": 900}', "below the board limit"),
    ('{"name": "x",', ":1: not valid JSON"),
])
def test_user_gpu_file_errors_name_file_line_and_field(tmp_path, text, message) -> None:
    path = tmp_path / ("bad.json" if text.startswith("{") else "bad.yaml")
    path.write_text(text)
    with pytest.raises(GpuSpecError, match=message) as info:
        load_gpu_spec(path)
    assert str(path) in str(info.value)


def test_runtimes_differ_in_overheads_not_physics() -> None:
    eager, vllm = runtime_profile("eager"), runtime_profile("vllm")
    assert runtime_profile("vLLM-0.5.4").name == "vllm-0.5.4"
    with pytest.raises(KeyError, match="known"):
        runtime_profile("tensorrt")
    gpu = gpu_spec("A100")
    tiny = [primitive_cost(1e6, 1e5, "fp16", "elementwise", gpu, HardwareParams(), r)
            for r in (eager, vllm)]
    # a tiny kernel is host-bound under eager dispatch, not under CUDA graphs
    assert tiny[0].time_s > tiny[1].time_s
    assert tiny[0].roofline_s == tiny[1].roofline_s
    assert set(RUNTIMES) >= {"eager", "compile", "vllm", "vllm-0.5.4"}


@pytest.mark.parametrize("gpu", sorted(GPUS))
@pytest.mark.parametrize("kind", [c for c in CLASSES if c != "comm"])
def test_time_at_least_roofline_and_power_at_most_board_limit(gpu, kind) -> None:
    spec = gpu_spec(gpu)
    # efficiencies and shares at their upper bounds: the most power-hungry parameters
    hot = HardwareParams(eff_compute=dict.fromkeys(HardwareParams().eff_compute, 1.0),
                         eff_memory=dict.fromkeys(HardwareParams().eff_memory, 1.0),
                         overlap=0.01, eff_fp8=1.0, busy_share=0.6, byte_share=2.0,
                         flop_share=2.0, idle_scale=3.0)
    for params in (HardwareParams(), hot):
        for runtime in RUNTIMES.values():
            model = HardwareModel(spec, runtime, params)
            for flops, nbytes in ((1e15, 1e9), (1e9, 1e10), (1e14, 1e11), (0.0, 1e8), (1e12, 0)):
                for dtype in ("bf16", "fp8", "fp32"):
                    cost = model.primitive(flops, nbytes, dtype, kind, kernels=3)
                    assert cost.time_s >= roofline_time(flops, nbytes, dtype, spec) * (1 - 1e-12)
                    assert 0 < cost.power_w <= spec.power_limit_w * (1 + 1e-9)
                    assert cost.energy_j > 0
    # the hot parameters do hit the limit on a compute-bound GEMM: the clocks throttle
    cost = HardwareModel(spec, runtime_profile("compile"), hot).primitive(1e15, 1e9, "bf16")
    assert cost.throttled and cost.power_w == pytest.approx(spec.power_limit_w)


def test_fp8_gemm_pays_a_per_kernel_overhead_at_the_compute_draw() -> None:
    """A GEMM on fp8 weights: ``kernels × fp8_kernel_s`` more kernel time than its roofline
    terms, drawn at idle + busy + the compute share of the budget; other dtypes pay nothing."""
    spec, runtime = gpu_spec("H100"), runtime_profile("vllm")
    base, slow = HardwareParams(fp8_kernel_s=1e-8), HardwareParams(fp8_kernel_s=20e-6)
    a = primitive_cost(1e9, 1e8, "fp8", "matmul", spec, base, runtime, kernels=10)
    b = primitive_cost(1e9, 1e8, "fp8", "matmul", spec, slow, runtime, kernels=10)
    assert b.kernel_s - a.kernel_s == pytest.approx(10 * (20e-6 - 1e-8))
    budget = spec.power_limit_w - spec.idle_power_w * base.idle_scale
    idle = spec.idle_power_w * base.idle_scale
    busy = base.busy_share * budget
    extra_w = (b.energy_j - a.energy_j) / (b.time_s - a.time_s)
    assert extra_w == pytest.approx(idle + busy + base.flop_share * budget)
    assert b.power_w <= spec.power_limit_w
    for dtype in ("bf16", "fp16"):
        assert primitive_cost(1e9, 1e8, dtype, "matmul", spec, slow, runtime, 10) \
            == primitive_cost(1e9, 1e8, dtype, "matmul", spec, base, runtime, 10)


def test_module_is_children_plus_idle_overhead() -> None:
    model = HardwareModel(gpu_spec("H100"), runtime_profile("vllm"))
    kids = [model.primitive(1e12, 1e9), model.primitive(0, 1e8, kind="norm")]
    whole = module_cost(kids, model.gpu, model.params, overhead_s=1e-3)
    assert whole.time_s == pytest.approx(sum(k.time_s for k in kids) + 1e-3)
    assert whole.energy_j == pytest.approx(sum(k.energy_j for k in kids)
                                           + model.gpu.idle_power_w * 1e-3)
    assert model.step(kids).time_s > sum(k.time_s for k in kids)


def test_params_validate_and_roundtrip() -> None:
    params = HardwareParams(overlap=0.5)
    assert HardwareParams.from_dict(params.to_dict()) == params
    with pytest.raises(ValueError, match="byte_share"):
        HardwareParams.from_dict({**params.to_dict(), "byte_share": -1.0})
    with pytest.raises(ValueError, match="unknown parameter"):
        HardwareParams.from_dict({**params.to_dict(), "magic": 1.0})
    with pytest.raises(ValueError, match="flops"):
        primitive_cost(-1.0, 0.0, "bf16", "matmul", gpu_spec("H100"), params,
                       runtime_profile("vllm"))


def test_hardware_package_imports_no_torch() -> None:
    code = ("import sys, irene.hardware, irene.hardware.model; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_vectorised_evaluation_matches_the_node_model() -> None:
    """The fit's vectorised evaluation (irene.hardware.work.evaluate) computes the same
    equations as primitive_cost + module_cost, also with parameter arrays (K, 1)."""
    from types import SimpleNamespace

    import numpy as np

    from irene.hardware.work import Primitive, Work, WorkArrays, evaluate, work_cost

    works = [Work((Primitive("mlp", "matmul", 2e12 * s, 1e9, "bf16", 30),
                   Primitive("experts", "moe", 5e11, 4e9 * s, "fp8", 40),
                   Primitive("experts", "moe", 1e11, 1e9, "mxfp4", 4),
                   Primitive("cache", "attention", 1e10, 2e9 * s, "bf16", 8),
                   Primitive("norms", "norm", 0.0, 1e6, "bf16", 60),
                   Primitive("all-reduce", "comm", 0.0, 5e7, "bf16", 60)), gpus=4, tokens=64)
             for s in (0.01, 1.0, 30.0)]
    hot = HardwareParams(busy_share=0.6, byte_share=2.0, flop_share=2.0, overlap=0.2)
    arrays = WorkArrays.of(works)
    for gpu in ("H100", "A100", "L4"):
        for params in (HardwareParams(), hot):
            for runtime in (runtime_profile("eager"), runtime_profile("vllm")):
                t, e = evaluate(arrays, gpu_spec(gpu), params, runtime)
                for i, w in enumerate(works):
                    cost = work_cost(w, gpu_spec(gpu), params, runtime)
                    assert t[i] == pytest.approx(cost.seconds, rel=1e-9)
                    assert e[i] == pytest.approx(cost.step.energy_j, rel=1e-9)
                batch = SimpleNamespace(**{k: (np.full((2, 1), v) if isinstance(v, float)
                                               else {c: np.full((2, 1), x)
                                                     for c, x in v.items()})
                                           for k, v in params.to_dict().items()})
                tb, eb = evaluate(arrays, gpu_spec(gpu), batch, runtime)
                assert tb.shape == (2, 3) and np.allclose(tb[1], t) and np.allclose(eb[0], e)
