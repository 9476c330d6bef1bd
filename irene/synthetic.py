"""SYNTHETIC energy trees whose energies follow a documented formula (not measurements).

They stand in for measured data in the demo and the tests until this project ships its own
measurements. Every tree says so: root metadata ``synthetic: true`` and ``meter: "synthetic"``.

The formula, for a simulated accelerator (all energies in joules per call, times in seconds):

* leaf of primitive type ``k`` with ``F`` FLOPs and ``B`` bytes moved:
  ``time = LAUNCH_S + F / THROUGHPUT[k] + B / BANDWIDTH``,
  ``gpu_energy = GPU_POWER_W[k] * time``;
* module or model: its time and GPU energy are its children's sums plus its own overhead,
  ``time_overhead = MODULE_LAUNCH_S * n_children + B_out / BANDWIDTH`` (reshapes and copies
  not traced as primitives) and ``gpu_energy_overhead = IDLE_GPU_W * time_overhead``;
* ground truth at every node (a wall meter: GPU plus the rest of the system):
  ``energy = GPU_SHARE * gpu_energy + REST_POWER_W * time`` — so a parent equals exactly
  the sum of its children plus ``GPU_SHARE * gpu_energy_overhead + REST_POWER_W * time_overhead``.

``noise`` multiplies each measured quantity by ``1 + noise * N(0, 1)`` (seeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from irene.schema import FEATURE_FIELDS, MIB, SCHEMAS
from irene.tree import Node, Tree, node_id, place_nodes

LAUNCH_S = 8e-6
MODULE_LAUNCH_S = 2e-6
BANDWIDTH = 1.5e12  # bytes / s
THROUGHPUT = {"Linear": 60e12, "Conv1D": 55e12, "MatMul": 40e12, "Softmax": 4e12,
              "LayerNorm": 3e12, "GELU": 3e12, "Embedding": 1e12, "Tanh": 3e12}
GPU_POWER_W = {"Linear": 280.0, "Conv1D": 270.0, "MatMul": 240.0, "Softmax": 150.0,
               "LayerNorm": 140.0, "GELU": 150.0, "Embedding": 110.0, "Tanh": 120.0}
IDLE_GPU_W = 70.0
GPU_SHARE = 1.05
REST_POWER_W = 98.0
BYTES_PER_VALUE = 4


@dataclass(frozen=True)
class ArchSpec:
    """A transformer shape: ``family`` "bert" (Linear, post-norm) or "gpt" (Conv1D)."""

    name: str
    family: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int


#: small stand-ins named after the shapes of well-known models (the names say SYNTHETIC)
DEFAULT_ARCHS = (
    ArchSpec("synthetic-bert-small", "bert", 4, 256, 4, 1024, 8000),
    ArchSpec("synthetic-bert-wide", "bert", 2, 512, 8, 2048, 8000),
    ArchSpec("synthetic-gpt-small", "gpt", 4, 256, 4, 1024, 8000),
    ArchSpec("synthetic-gpt-deep", "gpt", 6, 192, 3, 768, 8000),
)


class _Builder:
    """Builds one synthetic tree; energies and features follow the module docstring."""

    def __init__(self, arch: ArchSpec, batch: int, seq: int, rng: np.random.Generator,
                 noise: float) -> None:
        self.arch, self.batch, self.seq, self.rng, self.noise = arch, batch, seq, rng, noise
        self.tokens = batch * seq

    def _jitter(self, value: float) -> float:
        if self.noise <= 0:
            return value
        return value * max(0.5, 1.0 + self.noise * float(self.rng.standard_normal()))

    def _node(self, scope: str, instance: str, kind: str, params: int, flops: float,
              bytes_moved: float, children: list[Node], time_s: float,
              gpu_j: float) -> Node:
        parent = scope.rsplit(".", 1)[0] if "." in scope else ""
        features = dict.fromkeys(FEATURE_FIELDS, 0.0)
        features.update(
            num_parameters=float(params), flops=flops / 1e6, mem_bytes=bytes_moved / MIB,
            cpu=10.0, mem=12.0, gpu=min(99.0, 20.0 + 1e6 * time_s), gpu_mem=15.0,
            gpu_clk=1900.0, gpu_mem_clk=3800.0, times_mean=self._jitter(time_s),
            gpu_energy_mean=self._jitter(gpu_j))
        truth = GPU_SHARE * gpu_j + REST_POWER_W * time_s
        return Node(id=node_id(self.arch.name, self.batch, self.seq, scope), scope=scope,
                    parent_name=parent, level=scope.count("."), instance_type=instance, type=kind,
                    features=features, ground_truth_energy=self._jitter(truth),
                    children=children)

    def leaf(self, scope: str, prim: str, params: int, flops: float,
             values_moved: float) -> tuple[Node, float, float]:
        bytes_moved = values_moved * BYTES_PER_VALUE
        time_s = LAUNCH_S + flops / THROUGHPUT[prim] + bytes_moved / BANDWIDTH
        gpu_j = GPU_POWER_W[prim] * time_s
        node = self._node(scope, prim, "ml", params, flops, bytes_moved, [], time_s, gpu_j)
        return node, time_s, gpu_j

    def inner(self, scope: str, instance: str, parts: list[tuple[Node, float, float]],
              out_values: float, kind: str = "module") -> tuple[Node, float, float]:
        children = [p[0] for p in parts]
        overhead_s = MODULE_LAUNCH_S * len(children) + out_values * BYTES_PER_VALUE / BANDWIDTH
        time_s = sum(p[1] for p in parts) + overhead_s
        gpu_j = sum(p[2] for p in parts) + IDLE_GPU_W * overhead_s
        params = int(sum(c.features["num_parameters"] for c in children))
        flops = sum(c.features["flops"] for c in children) * 1e6
        bytes_moved = sum(c.features["mem_bytes"] for c in children) * MIB
        node = self._node(scope, instance, kind, params, flops, bytes_moved, children, time_s,
                          gpu_j)
        return node, time_s, gpu_j

    def linear(self, scope: str, d_in: int, d_out: int) -> tuple[Node, float, float]:
        prim = "Conv1D" if self.arch.family == "gpt" else "Linear"
        return self.leaf(scope, prim, d_in * d_out + d_out, 2.0 * self.tokens * d_in * d_out,
                         self.tokens * (d_in + d_out) + d_in * d_out)

    def norm(self, scope: str) -> tuple[Node, float, float]:
        h = self.arch.hidden
        return self.leaf(scope, "LayerNorm", 2 * h, 8.0 * self.tokens * h, 2.0 * self.tokens * h)

    def attention(self, scope: str) -> tuple[Node, float, float]:
        a, t, s = self.arch, self.tokens, self.seq
        scores = float(self.batch * a.heads * s * s)
        parts = [self.linear(f"{scope}.{n}", a.hidden, a.hidden) for n in ("query", "key",
                                                                           "value")]
        parts.append(self.leaf(f"{scope}.matmul_qk", "MatMul", 0, 2.0 * scores * a.hidden
                               / a.heads, 2.0 * t * a.hidden + scores))
        parts.append(self.leaf(f"{scope}.softmax", "Softmax", 0, 5.0 * scores, 2.0 * scores))
        parts.append(self.leaf(f"{scope}.matmul_av", "MatMul", 0, 2.0 * scores * a.hidden
                               / a.heads, scores + 2.0 * t * a.hidden))
        parts.append(self.linear(f"{scope}.output", a.hidden, a.hidden))
        parts.append(self.norm(f"{scope}.LayerNorm"))
        return self.inner(scope, "SynthAttention", parts, 3.0 * t * a.hidden)

    def mlp(self, scope: str) -> tuple[Node, float, float]:
        a, t = self.arch, self.tokens
        parts = [self.linear(f"{scope}.fc_in", a.hidden, a.ffn),
                 self.leaf(f"{scope}.act", "GELU", 0, 8.0 * t * a.ffn, 2.0 * t * a.ffn),
                 self.linear(f"{scope}.fc_out", a.ffn, a.hidden),
                 self.norm(f"{scope}.LayerNorm")]
        return self.inner(scope, "SynthMLP", parts, t * a.ffn)

    def tree(self) -> Tree:
        a, t = self.arch, self.tokens
        emb_parts = [self.leaf("root.embeddings.word_embeddings", "Embedding", a.vocab * a.hidden,
                               0.0, t * a.hidden + t),
                     self.leaf("root.embeddings.position_embeddings", "Embedding",
                               512 * a.hidden, 0.0, t * a.hidden + t),
                     self.norm("root.embeddings.LayerNorm")]
        parts = [self.inner("root.embeddings", "SynthEmbeddings", emb_parts, t * a.hidden)]
        layers = []
        for i in range(a.layers):
            scope = f"root.encoder.layer.{i}"
            layers.append(self.inner(scope, "SynthLayer", [self.attention(f"{scope}.attention"),
                                                           self.mlp(f"{scope}.mlp")], 0.0))
        parts.append(self.inner("root.encoder", "SynthEncoder", layers, 0.0))
        root, _, _ = self.inner("root", f"Synth{a.family.capitalize()}Model", parts, 0.0,
                                kind="model")
        place_nodes(root)
        meta = {"synthetic": True, "meter": "synthetic", "schema": SCHEMAS["irene"].to_dict(),
                "note": "SYNTHETIC: energies follow the formula in irene/synthetic.py, "
                        "not a measurement"}
        return Tree(model_name=a.name, batch_size=self.batch, seq_len=self.seq, root=root,
                    meta=meta)


def make_synthetic_trees(archs: Sequence[ArchSpec] = DEFAULT_ARCHS,
                         batch_sizes: Sequence[int] = (1, 4, 8, 16),
                         seq_lens: Sequence[int] = (32, 64, 128, 256), *, noise: float = 0.0,
                         seed: int = 0) -> list[Tree]:
    """One SYNTHETIC tree per (architecture, batch size, sequence length)."""
    rng = np.random.default_rng(seed)
    return [_Builder(arch, b, s, rng, noise).tree()
            for arch in archs for b in batch_sizes for s in seq_lens]

