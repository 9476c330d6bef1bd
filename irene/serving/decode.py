"""What one steady-state decode step of a served LLM reads, computes and communicates.

A vLLM server decoding ``B`` sequences runs one forward pass per step: every sequence gains one
token, and requests arriving in the freed slots are prefilled in the same pass (chunked
prefill). In the steady state of a workload with prompts of ``P`` tokens and outputs of ``L``
tokens, ``B / L`` requests start per step, so a step processes ``B`` decode tokens plus, on
average, ``λ·P`` prompt tokens (``λ = B / L``). Its costs, per module of each layer:

* **weight bytes**: every weight the step multiplies, read once from memory in the served
  format (bf16 2 B, fp8 1 B, mxfp4 ≈ 0.53 B per parameter); for routed experts, only the experts
  that the step's tokens touch: ``E · (1 − (1 − k/E)^T)`` per layer for ``T`` tokens, averaged
  over the Poisson number of prompts in the step;
* **cache bytes**: the KV cache of ``B`` sequences at the mean context (``P`` + the request's
  earlier output tokens), capped by sliding windows / attention chunks; Mamba states are read and
  written;
* **GEMM FLOPs**: ``2 · parameters used · tokens`` (experts at ``k/E``);
* **attention FLOPs**: scores and weighted sums over the context (decode) and the causal
  prompt attention of the prefilled requests.

:func:`module_costs` gives these for the whole model, per (layer, module) — **the seam where a
traced decode step** (``irene trace --phase decode``) **can supply the breakdown instead of the
analytic count**: anything producing the same :class:`ModuleCost` records can be passed to
:func:`shard`. :func:`shard` then applies the parallel layout (:class:`Parallelism`): tensor
parallelism splits weights, heads and the KV cache (a cache with fewer KV heads than ranks is
replicated; a latent MLA cache is kept whole by every rank), experts are spread over all GPUs,
data-parallel attention replicates the attention weights per replica, and every tensor-parallel
layer ends in an all-reduce of the step's activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from irene.serving.structure import (
    CACHE_BYTES,
    FORMAT_BYTES,
    ModelStructure,
    expected_distinct_experts,
)

if TYPE_CHECKING:
    from irene.hardware.work import Work


#: the hardware model's primitive class of each module's GEMMs (its cache work is "attention")
MODULE_CLASS = {"attention": "matmul", "mlp": "matmul", "experts": "moe",
                "shared_experts": "matmul", "router": "matmul", "mamba": "matmul",
                "norms": "norm", "embedding": "embedding", "head": "matmul"}
#: kernels per layer of each module: (GEMM part, cache part) — QKV, rotary, cache write and
#: output projection; gate-up, activation, down; router top-k, two grouped GEMMs, combine; ...
KERNELS: dict[str, tuple[float, float]] = {
    "attention": (4, 1), "mlp": (3, 0), "experts": (4, 0), "shared_experts": (3, 0),
    "router": (1, 0), "mamba": (4, 1), "norms": (2, 0), "embedding": (1, 0), "head": (2, 0)}


class ServingInputError(ValueError):
    """A workload or parallel layout that cannot be served (bad numbers, bad split)."""


@dataclass(frozen=True)
class Workload:
    """A steady serving workload: ``batch`` sequences decoded together (the average number of
    running requests), prompts of ``prompt_len`` tokens, outputs of ``output_len`` tokens, and
    the mean ``context`` (tokens in a sequence's KV cache at a decode step: the prompt plus the
    request's earlier output tokens)."""

    batch: float
    prompt_len: float
    output_len: float
    context: float

    def __post_init__(self) -> None:
        for name in ("batch", "output_len"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ServingInputError(f"{name} must be a positive number, got {value!r}")
        for name in ("prompt_len", "context"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ServingInputError(f"{name} must be a number >= 0, got {value!r}")

    @classmethod
    def of_requests(cls, batch: float, prompt_len: float, output_len: float) -> Workload:
        """Requests of a fixed prompt and output length: the mean context at a decode step is
        the prompt plus half the output."""
        return cls(batch, prompt_len, output_len, prompt_len + output_len / 2)

    @property
    def prompts_per_step(self) -> float:
        """λ: requests prefilled per decode step in the steady state (``batch / output_len``)."""
        return self.batch / self.output_len


@dataclass(frozen=True)
class Parallelism:
    """How one model instance is spread over ``gpus`` GPUs: ``data`` attention replicas (vLLM's
    data-parallel attention; 1 = none), each tensor-parallel over ``gpus / data`` GPUs; routed
    experts are spread over all GPUs (expert parallelism or tensor-parallel experts, the same
    bytes per GPU)."""

    gpus: int
    data: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.gpus, int) or self.gpus < 1:
            raise ServingInputError(f"the GPU count must be an integer >= 1, got {self.gpus!r}")
        if not isinstance(self.data, int) or self.data < 1 or self.gpus % self.data:
            raise ServingInputError(f"data-parallel degree {self.data!r} must divide the GPU "
                                    f"count {self.gpus}")

    @property
    def tensor(self) -> int:
        """Tensor-parallel degree of attention and dense layers."""
        return self.gpus // self.data


@dataclass(frozen=True)
class ModuleCost:
    """The decode-step costs of one module of one layer (whole model, before sharding).

    ``layer`` is -1 for the embedding, the output head and the final norm. ``weight_bytes``:
    bytes of weights read; ``cache_bytes``: KV-cache / state bytes read (and written);
    ``gemm_flops``/``attention_flops``: FLOPs; ``low_precision_flops``: the part of
    ``gemm_flops`` on fp8 weights (fp8 tensor cores); ``kv_heads``: how many ways tensor
    parallelism can split the cache (0 = no cache); ``replicated``: weights every GPU holds whole
    (norms); ``activations``: bytes of activations a tensor-parallel all-reduce after this module
    moves (0 = none).
    """

    layer: int
    module: str
    weight_bytes: float
    cache_bytes: float = 0.0
    gemm_flops: float = 0.0
    attention_flops: float = 0.0
    low_precision_flops: float = 0.0
    kv_heads: int = 0
    replicated: bool = False
    activations: float = 0.0


@dataclass(frozen=True)
class DecodeStep:
    """The per-GPU costs of one decode step (the busiest GPU; all GPUs assumed equally busy).

    ``costs``: the per-GPU :class:`ModuleCost` records; ``allreduces``: tensor-parallel
    all-reduces per step (0 on one GPU) and ``allreduce_bytes`` each GPU sends in them (ring:
    ``2 (n − 1)/n`` of the message); ``expert_exchanges``: MoE layers whose tokens travel to
    experts on other GPUs and back, and ``expert_exchange_bytes`` each GPU sends for them;
    ``tokens``: decode + prompt tokens of the step.
    """

    structure: ModelStructure
    workload: Workload
    parallel: Parallelism
    costs: tuple[ModuleCost, ...]
    allreduces: float
    allreduce_bytes: float
    expert_exchanges: float
    expert_exchange_bytes: float
    tokens: float

    def total(self, field: str, module: str | None = None, experts: bool | None = None) -> float:
        """Sum of ``field`` over the per-GPU records (of one ``module``; only / no experts)."""
        return sum(getattr(c, field) for c in self.costs
                   if (module is None or c.module == module)
                   and (experts is None or (c.module == "experts") == experts))

    def work(self, dtype: str = "bf16") -> Work:
        """This step as a workload of the hardware model (:mod:`irene.hardware.work`): per
        module one GEMM primitive (weights read, GEMM FLOPs; routed experts as class ``moe``,
        in the served format) and one cache primitive (KV cache / state read, attention FLOPs,
        class ``attention``), the tensor-parallel all-reduces and expert exchanges as ``comm``;
        kernel counts per module and layer from :data:`KERNELS`; ``dtype`` the activation
        dtype (bf16; fp16 for the eager fp16 runs). Tokens: the step's output tokens."""
        from irene.hardware.work import Primitive, Work

        layers: dict[str, set[int]] = {}
        sums: dict[str, dict[str, float]] = {}
        for c in self.costs:
            layers.setdefault(c.module, set()).add(c.layer)
            slot = sums.setdefault(c.module, dict.fromkeys(
                ("weight_bytes", "gemm_flops", "low_precision_flops", "cache_bytes",
                 "attention_flops"), 0.0))
            for key in slot:
                slot[key] += getattr(c, key)
        prims: list[Primitive] = []
        fmt = self.structure.weight_format
        for module, v in sums.items():
            n = len(layers[module])
            gemm_kernels, cache_kernels = KERNELS[module]
            if module == "experts" and fmt in ("mxfp4",):
                gemm_dtype = fmt
            elif v["gemm_flops"] and v["low_precision_flops"] >= 0.5 * v["gemm_flops"]:
                gemm_dtype = "fp8"
            else:
                gemm_dtype = dtype
            if v["weight_bytes"] or v["gemm_flops"]:
                prims.append(Primitive(module, MODULE_CLASS[module], v["gemm_flops"],
                                       v["weight_bytes"], gemm_dtype, gemm_kernels * n))
            if v["cache_bytes"] or v["attention_flops"]:
                prims.append(Primitive(f"{module} cache", "attention", v["attention_flops"],
                                       v["cache_bytes"], dtype, cache_kernels * n))
        if self.allreduces:
            prims.append(Primitive("all-reduce", "comm", 0.0, self.allreduce_bytes, dtype,
                                   self.allreduces))
        if self.expert_exchanges:
            prims.append(Primitive("expert exchange", "comm", 0.0, self.expert_exchange_bytes,
                                   dtype, self.expert_exchanges))
        return Work(tuple(prims), gpus=self.parallel.gpus, tokens=self.workload.batch)

    def features(self) -> dict[str, float]:
        """The step's structure features, per GPU: bytes (weights, of which routed experts; KV
        cache), FLOPs (GEMM, of which fp8; attention), collectives and their bytes, the tokens
        of the step, prompts started per step and decoder layers."""
        return {
            "weight_bytes": self.total("weight_bytes"),
            "expert_weight_bytes": self.total("weight_bytes", experts=True),
            "cache_bytes": self.total("cache_bytes"),
            "gemm_flops": self.total("gemm_flops"),
            "low_precision_flops": self.total("low_precision_flops"),
            "attention_flops": self.total("attention_flops"),
            "allreduces": self.allreduces,
            "allreduce_bytes": self.allreduce_bytes,
            "expert_exchanges": self.expert_exchanges,
            "expert_exchange_bytes": self.expert_exchange_bytes,
            "tokens": self.tokens,
            "prompts": self.workload.prompts_per_step,
            "layers": float(self.structure.num_layers),
            "moe_layers": float(len({c.layer for c in self.costs if c.module == "experts"})),
        }


# --------------------------------------------------------------------------- whole-model costs

def _attention_context(window: int, context: float) -> float:
    """Tokens one decode query attends to: the context, capped by a window or chunk."""
    return min(context, window) if window else context


def _prompt_attention_pairs(window: int, prompt: float) -> float:
    """(query, key) pairs of causal attention over a prompt of ``prompt`` tokens (window-capped;
    a chunked layer is approximated as a window of the chunk size)."""
    if window and prompt > window:
        return window * (window + 1) / 2 + (prompt - window) * window
    return prompt * (prompt + 1) / 2


def module_costs(structure: ModelStructure, workload: Workload) -> list[ModuleCost]:
    """The analytic costs of one decode step of ``structure`` under ``workload``, per (layer,
    module), for the whole model (see the module docstring; shard with :func:`shard`)."""
    batch, lam, prompt = workload.batch, workload.prompts_per_step, workload.prompt_len
    gemm_tokens = batch + lam * prompt
    hidden_bytes = structure.hidden_size * CACHE_BYTES
    touched = _touched_fraction(structure, workload)
    fp8 = structure.weight_format == "fp8"
    acc: dict[tuple[int, str], dict[str, float]] = {}

    def add(layer: int, module: str, **values: float) -> None:
        slot = acc.setdefault((layer, module), {})
        for key, value in values.items():
            slot[key] = slot.get(key, 0.0) + value

    for layer, module, numel, element, experts in structure.weight_groups():
        if module == "embedding":  # a lookup: one row per token
            add(layer, module, weight_bytes=gemm_tokens * structure.hidden_size * element)
            continue
        if module == "head":  # logits of the decode tokens (and one per prompt)
            add(layer, module, weight_bytes=numel * element,
                gemm_flops=2.0 * numel * (batch + lam))
            continue
        used = structure.experts_per_token / experts if experts else 1.0
        flops = 2.0 * numel * used * gemm_tokens if module != "norms" else 0.0
        low = flops if fp8 and element == FORMAT_BYTES["fp8"] else 0.0
        read = touched if experts else 1.0
        add(layer, module, weight_bytes=numel * element * read, gemm_flops=flops,
            low_precision_flops=low)

    if structure.tied_embeddings and (-1, "head") not in acc:
        # the head multiplies by the (shared) embedding matrix: read whole, GEMM per logit row
        numel = structure.vocab_size * structure.hidden_size
        add(-1, "head", weight_bytes=numel * FORMAT_BYTES["bf16"],
            gemm_flops=2.0 * numel * (batch + lam))
    records: list[ModuleCost] = []
    for (layer, module), v in sorted(acc.items()):
        extra: dict[str, float | int | bool] = {}
        if layer in structure.attention and module == "attention":
            a = structure.attention[layer]
            ctx = _attention_context(a.window, workload.context)
            extra.update(cache_bytes=batch * ctx * a.kv_bytes_per_token, kv_heads=a.kv_heads,
                         attention_flops=a.flops_per_context_token * (
                             batch * ctx + lam * _prompt_attention_pairs(a.window, prompt)))
        if layer in structure.recurrent and module == "mamba":
            r = structure.recurrent[layer]
            extra.update(cache_bytes=2.0 * batch * r.state_bytes, kv_heads=r.heads,
                         attention_flops=r.flops_per_token * gemm_tokens)
        if layer >= 0 and module in ("attention", "mamba", "mlp"):
            extra["activations"] = gemm_tokens * hidden_bytes
        if module == "experts":
            extra["activations"] = gemm_tokens * hidden_bytes
        records.append(ModuleCost(layer=layer, module=module, replicated=module == "norms",
                                  **v, **extra))
    return records


def _touched_fraction(structure: ModelStructure, workload: Workload) -> float:
    """Expected fraction of a layer's routed experts that one step touches: ``B`` decode tokens
    plus the prompts of a Poisson(λ) number of new requests, each token picking ``k`` of ``E``
    experts uniformly: ``1 − (1 − k/E)^B · exp(λ ((1 − k/E)^P − 1))``."""
    experts, k = structure.experts, structure.experts_per_token
    if not experts or not k:
        return 0.0
    miss = 1.0 - min(k, experts) / experts
    lam, prompt = workload.prompts_per_step, workload.prompt_len
    fraction = 1.0 - miss ** workload.batch * math.exp(lam * (miss ** prompt - 1.0))
    # the decode tokens alone: the closed form of expected_distinct_experts
    decode_only = expected_distinct_experts(experts, k, workload.batch) / experts
    return max(fraction, decode_only)


# --------------------------------------------------------------------------- sharding

def shard(structure: ModelStructure, workload: Workload, parallel: Parallelism,
          costs: list[ModuleCost] | None = None) -> DecodeStep:
    """The per-GPU decode step: ``costs`` (default: :func:`module_costs`) split over
    ``parallel`` (see the module docstring)."""
    if costs is None:
        costs = module_costs(structure, workload)
    tp, dp, gpus = parallel.tensor, parallel.data, parallel.gpus
    per_gpu: list[ModuleCost] = []
    allreduces = allreduce_bytes = exchanges = exchange_bytes = 0.0
    for c in costs:
        if c.module == "experts":  # spread over every GPU, tokens of all replicas
            per_gpu.append(_scaled(c, 1.0 / gpus, 1.0 / gpus, 1.0 / gpus))
        elif c.replicated:
            per_gpu.append(_scaled(c, 1.0, 1.0 / dp, 1.0 / dp))
        else:
            # weights split over the tensor ranks of one replica; its sequences are 1/dp
            cache_split = min(tp, c.kv_heads) if c.kv_heads else tp
            per_gpu.append(_scaled(c, 1.0 / tp, 1.0 / (dp * tp), 1.0 / (dp * cache_split),
                                   attention=1.0 / (dp * tp)))
        if not c.activations:
            continue
        if c.module == "experts" and gpus > 1:
            # tokens sent to the experts' GPUs and their outputs back (all-gather +
            # reduce-scatter of the step's activations over all GPUs)
            exchanges += 1
            exchange_bytes += 2.0 * (gpus - 1) / gpus * c.activations
        elif c.module != "experts" and tp > 1:
            # ring all-reduce of one replica's activations over its tensor ranks
            allreduces += 1
            allreduce_bytes += 2.0 * (tp - 1) / tp * c.activations / dp
    return DecodeStep(structure=structure, workload=workload, parallel=parallel,
                      costs=tuple(per_gpu), allreduces=allreduces,
                      allreduce_bytes=allreduce_bytes, expert_exchanges=exchanges,
                      expert_exchange_bytes=exchange_bytes,
                      tokens=workload.batch + workload.prompts_per_step * workload.prompt_len)


def _scaled(c: ModuleCost, weights: float, flops: float, cache: float,
            attention: float | None = None) -> ModuleCost:
    """``c`` with its weight bytes, GEMM FLOPs, cache bytes and attention FLOPs scaled."""
    return replace(c, weight_bytes=c.weight_bytes * weights, gemm_flops=c.gemm_flops * flops,
                   low_precision_flops=c.low_precision_flops * flops,
                   cache_bytes=c.cache_bytes * cache,
                   attention_flops=c.attention_flops * (flops if attention is None
                                                        else attention))


def decode_step(structure: ModelStructure, workload: Workload, parallel: Parallelism) -> DecodeStep:
    """The per-GPU decode step of ``structure`` (analytic costs, :func:`module_costs`)."""
    return shard(structure, workload, parallel)
