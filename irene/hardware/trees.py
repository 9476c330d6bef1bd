"""The hardware model applied to a traced tree: time, energy and power of every node on a GPU.

Each leaf (``ml`` node) is one primitive of a class of :data:`~irene.hardware.runtime.CLASSES`
(:func:`primitive_class`, from its instance type) with the tree's FLOPs (MFLOP) and bytes (MiB)
converted to FLOPs and bytes; its cost comes from :func:`irene.hardware.model.primitive_cost`.
A module, and the model, cost the sum of their children (:func:`irene.hardware.model.module_cost`)
plus, at the root of a forward step, the runtime's per-step host overhead. The tree's own
units stay: ``predicted_energy`` in J per call; the node's time (s) and average power (W) go to
``extra["predicted_time_s"]`` and ``extra["predicted_power_w"]``.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

from irene.hardware.model import HardwareModel, NodeCost
from irene.tree import Node, Tree

MIB = 2.0**20  # bytes per MiB (the trees' mem_bytes unit)
MFLOP = 1e6  # FLOPs per MFLOP (the trees' flops unit)

#: instance types of GEMM primitives (modules and functions; lower-cased)
MATMUL_TYPES = frozenset({"linear", "conv1d", "conv2d", "bilinear", "matmul", "bmm", "addmm",
                          "baddbmm", "einsum"})
#: instance types of fused attention (lower-cased)
ATTENTION_TYPES = frozenset({"scaleddotproductattention", "sdpa", "flashattention"})
#: instance types of look-ups (lower-cased)
EMBEDDING_TYPES = frozenset({"embedding", "embeddingbag"})
#: the tree dtypes (torch names) -> the data sheet's dtype names
TRACE_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def primitive_class(instance_type: str) -> str:
    """The hardware model's class of a leaf: ``matmul`` (GEMMs: Linear, Conv1D, MatMul...),
    ``attention`` (fused SDPA), ``embedding`` (look-ups), ``norm`` (any *Norm), else
    ``elementwise`` (activations, adds, softmax, optimiser updates: memory-bound passes). A
    backward node (``LinearBackward``) is of its forward primitive's class."""
    key = instance_type.lower().removesuffix("backward")
    if key in MATMUL_TYPES:
        return "matmul"
    if key in ATTENTION_TYPES:
        return "attention"
    if key in EMBEDDING_TYPES:
        return "embedding"
    if "norm" in key:
        return "norm"
    return "elementwise"


@dataclass(frozen=True)
class TreeCost:
    """Costs of every node of a tree (by ``id(node)``) and the classes of its leaves."""

    costs: dict[int, NodeCost]
    classes: dict[str, int]

    def of(self, node: Node) -> NodeCost:
        """The cost of ``node`` (a node of the costed tree)."""
        return self.costs[id(node)]


def cost_tree(tree: Tree, hardware: HardwareModel, dtype: str) -> TreeCost:
    """Time, energy and power of every node of ``tree`` on ``hardware`` with GEMMs in
    ``dtype`` (a data-sheet dtype name: fp32, tf32, bf16, fp16, fp8); writes them on the nodes
    (``predicted_energy`` J, ``extra["predicted_time_s"]`` s, ``extra["predicted_power_w"]``
    W) and returns them. The root of a forward step also pays the runtime's step overhead."""
    costs: dict[int, NodeCost] = {}
    classes: dict[str, int] = {}

    def visit(node: Node, is_root: bool) -> NodeCost:
        if node.is_leaf:
            kind = primitive_class(node.instance_type)
            classes[kind] = classes.get(kind, 0) + 1
            flops = max(float(node.features.get("flops", 0.0)), 0.0) * MFLOP
            nbytes = max(float(node.features.get("mem_bytes", 0.0)), 0.0) * MIB
            cost = hardware.primitive(flops, nbytes, dtype=dtype, kind=kind)
        else:
            children = [visit(child, False) for child in node.children]
            cost = hardware.step(children) if is_root else hardware.module(children)
        costs[id(node)] = cost
        node.predicted_energy = cost.energy_j
        node.extra["predicted_time_s"] = cost.time_s
        node.extra["predicted_power_w"] = cost.power_w
        return cost

    visit(tree.root, True)
    return TreeCost(costs, classes)
