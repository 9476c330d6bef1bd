"""Small trees with known energies for the tests.

``toy_tree`` is small enough to compute every share by hand; ``bert_like_tree`` has the shape and
scopes of a traced BERT (embeddings, encoder layers, attention, ...) with energies that follow
FLOPs, a ground truth, and a prediction a few percent off, for the page and the figures.
``synthetic_energy`` writes a formula ground truth into any tree. ``learned_tree`` is a tree a
predictor has to learn (leaf costs per primitive type, modules a little above their children).
"""

from __future__ import annotations

import random

from irene.tree import FEATURE_FIELDS, Node, Tree, place_nodes


def make_node(scope: str, kind: str, itype: str, children: list[Node] | None = None, *,
              predicted: float | None = None, measured: float | None = None,
              **features: float) -> Node:
    """A node with every feature present (0 unless given)."""
    values = {k: float(features.get(k, 0.0)) for k in FEATURE_FIELDS}
    return Node(id=scope, scope=scope, parent_name=scope.rsplit(".", 1)[0] if "." in scope else "",
                level=scope.count(".") + 1 if scope else 0, instance_type=itype, type=kind,
                features=values, predicted_energy=predicted, ground_truth_energy=measured,
                children=list(children or []))


def toy_tree(*, predicted: bool = True, measured: bool = True) -> Tree:
    """A 3-module tree whose energies are round numbers (J).

    predicted: root 10; embed 1.5 (word 1.5); layer.0 and layer.1 4.25 each (linear 3, softmax
    1.25). Leaves sum to 10 J: Linear 60 %, softmax 25 %, Embedding 15 %.
    measured: root 9.5; embed 1.45 (word 1.4); layer.0 4.0 (3.3, 1.2); layer.1 4.3 (2.9, 1.3).
    """
    def n(scope, kind, itype, p, m, kids=None):
        return make_node(scope, kind, itype, kids, predicted=p if predicted else None,
                         measured=m if measured else None, flops=p * 100, num_parameters=10)

    root = n("toy", "model", "ToyModel", 10.0, 9.5, [
        n("toy.embed", "module", "Embed", 1.5, 1.45,
          [n("toy.embed.word", "ml", "Embedding", 1.5, 1.4)]),
        n("toy.layer.0", "module", "Layer", 4.25, 4.0, [
            n("toy.layer.0.linear", "ml", "Linear", 3.0, 3.3),
            n("toy.layer.0.softmax", "ml", "softmax", 1.25, 1.2)]),
        n("toy.layer.1", "module", "Layer", 4.25, 4.3, [
            n("toy.layer.1.linear", "ml", "Linear", 3.0, 2.9),
            n("toy.layer.1.softmax", "ml", "softmax", 1.25, 1.3)]),
    ])
    return Tree("toy", 2, 16, place_nodes(root), meta={"device": "test device"})


_J_PER_MFLOP = 4e-6   # energy per MFLOP of the synthetic "hardware"
_J_PER_CALL = 2e-5    # fixed cost of launching one primitive


class _BertBuilder:
    """Builds one BERT-shaped tree with FLOP-driven energies."""

    def __init__(self, batch_size: int, seq_len: int, hidden: int, layers: int,
                 predicted: bool, measured: bool, seed: int) -> None:
        self.tokens = batch_size * seq_len
        self.b, self.s, self.h, self.layers = batch_size, seq_len, hidden, layers
        self.predicted, self.measured = predicted, measured
        self.rng = random.Random(seed)

    def leaf(self, scope: str, itype: str, mflop: float, params: int = 0,
             mem_mib: float = 0.0) -> Node:
        energy = _J_PER_CALL + _J_PER_MFLOP * mflop + 2e-5 * mem_mib
        truth = energy * self.rng.uniform(0.9, 1.1)
        guess = truth * self.rng.uniform(0.88, 1.12)
        return make_node(scope, "ml", itype, predicted=guess if self.predicted else None,
                         measured=truth if self.measured else None, flops=mflop,
                         num_parameters=params, mem_bytes=mem_mib,
                         times_mean=truth / 40.0, cpu=35.0, mem=12.0)

    def inner(self, scope: str, itype: str, children: list[Node], kind: str = "module") -> Node:
        truth = sum(c.ground_truth_energy or 0.0 for c in children) * self.rng.uniform(1.0, 1.06)
        guess = sum(c.predicted_energy or 0.0 for c in children) * self.rng.uniform(1.0, 1.04)
        totals = {k: sum(c.features[k] for c in children)
                  for k in ("flops", "num_parameters", "mem_bytes", "times_mean")}
        return make_node(scope, kind, itype, children,
                         predicted=guess if self.predicted else None,
                         measured=truth if self.measured else None, cpu=35.0, mem=12.0, **totals)

    def linear(self, scope: str, n_in: int, n_out: int) -> Node:
        mflop = 2 * self.tokens * n_in * n_out / 1e6
        mem = 4 * (self.tokens * (n_in + n_out) + n_in * n_out) / 2**20
        return self.leaf(scope, "Linear", mflop, n_in * n_out + n_out, mem)

    def elementwise(self, scope: str, itype: str, width: int, per_element: float = 1.0) -> Node:
        elements = self.tokens * width
        return self.leaf(scope, itype, per_element * elements / 1e6, 0, 8 * elements / 2**20)

    def layer(self, i: int) -> Node:
        p, h = f"bert.encoder.layer.{i}", self.h
        scores = self.b * 12 * self.s * self.s
        attention_self = self.inner(f"{p}.attention.self", "BertSelfAttention", [
            self.linear(f"{p}.attention.self.query", h, h),
            self.linear(f"{p}.attention.self.key", h, h),
            self.linear(f"{p}.attention.self.value", h, h),
            self.leaf(f"{p}.attention.self.matmul", "matmul", 2 * scores * h / 12 / 1e6),
            self.leaf(f"{p}.attention.self.softmax", "softmax", 5 * scores / 1e6),
            self.leaf(f"{p}.attention.self.dropout", "Dropout", 0.0),
            self.leaf(f"{p}.attention.self.matmul_1", "matmul", 2 * scores * h / 12 / 1e6),
        ])
        attention_output = self.inner(f"{p}.attention.output", "BertSelfOutput", [
            self.linear(f"{p}.attention.output.dense", h, h),
            self.leaf(f"{p}.attention.output.dropout", "Dropout", 0.0),
            self.elementwise(f"{p}.attention.output.LayerNorm", "LayerNorm", h, 5),
        ])
        return self.inner(p, "BertLayer", [
            self.inner(f"{p}.attention", "BertAttention", [attention_self, attention_output]),
            self.inner(f"{p}.intermediate", "BertIntermediate", [
                self.linear(f"{p}.intermediate.dense", h, 4 * h),
                self.elementwise(f"{p}.intermediate.intermediate_act_fn", "GELUActivation",
                                 4 * h, 8)]),
            self.inner(f"{p}.output", "BertOutput", [
                self.linear(f"{p}.output.dense", 4 * h, h),
                self.leaf(f"{p}.output.dropout", "Dropout", 0.0),
                self.elementwise(f"{p}.output.LayerNorm", "LayerNorm", h, 5)]),
        ])

    def tree(self) -> Tree:
        h = self.h
        embeddings = self.inner("bert.embeddings", "BertEmbeddings", [
            self.leaf("bert.embeddings.word_embeddings", "Embedding", 0.0, 30522 * h,
                      4 * self.tokens * h / 2**20),
            self.leaf("bert.embeddings.position_embeddings", "Embedding", 0.0, 512 * h),
            self.leaf("bert.embeddings.token_type_embeddings", "Embedding", 0.0, 2 * h),
            self.elementwise("bert.embeddings.LayerNorm", "LayerNorm", h, 5),
            self.leaf("bert.embeddings.dropout", "Dropout", 0.0),
        ])
        encoder = self.inner("bert.encoder", "BertEncoder",
                             [self.layer(i) for i in range(self.layers)])
        pooler = self.inner("bert.pooler", "BertPooler", [
            self.linear("bert.pooler.dense", h, h),
            self.elementwise("bert.pooler.activation", "Tanh", h)])
        root = self.inner("bert", "BertModel", [embeddings, encoder, pooler], kind="model")
        return Tree("bert-tiny-test", self.b, self.s, place_nodes(root),
                    meta={"device": "synthetic"})


def bert_like_tree(*, batch_size: int = 8, seq_len: int = 128, hidden: int = 256,
                   layers: int = 4, predicted: bool = True, measured: bool = True,
                   seed: int = 0, model_name: str | None = None) -> Tree:
    """A BERT-shaped tree (scopes as a trace of ``BertModel`` gives them) with known energies."""
    tree = _BertBuilder(batch_size, seq_len, hidden, layers, predicted, measured, seed).tree()
    if model_name:
        tree.model_name = model_name
    return tree


def synthetic_energy(tree: Tree) -> None:
    """Ground truth from a known formula: leaves 10 µJ + 4 µJ/MFLOP + 20 µJ/MiB (the features
    read as MFLOP and MiB); inner nodes 3 % above the sum of their children."""
    def fill(node: Node) -> float:
        if node.is_leaf:
            energy = 1e-5 + 4e-6 * node.features["flops"] + 2e-5 * node.features["mem_bytes"]
        else:
            energy = 1.03 * sum(fill(child) for child in node.children)
        node.ground_truth_energy = energy
        return energy

    fill(tree.root)


def learned_tree(name: str, layers: int, width: int, batch: int, seq: int, *,
                 power: float = 1.0) -> Tree:
    """A tree the model has to learn: leaf costs differ per primitive type (linear in FLOPs and
    bytes, or with ``power`` != 1 a power law ``∝ FLOPs^power · bytes^0.1``); every module costs
    1.03 × the sum of its children plus 40 µJ per MiB it moves beyond them."""
    tokens = batch * seq

    def leaf(scope: str, kind: str, flops: float, mem: float) -> Node:
        feats = dict.fromkeys(FEATURE_FIELDS, 0.0) | {"flops": flops, "mem_bytes": mem}
        a = {"Linear": 2e-6, "Softmax": 6e-6, "LayerNorm": 5e-6}[kind]
        energy = (a * flops + 3e-5 * mem + 1e-5 if power == 1.0
                  else 50 * a * flops ** power * mem ** 0.1)
        return Node(id=scope, scope=scope, parent_name="", level=0, instance_type=kind,
                    type="ml", features=feats, ground_truth_energy=float(energy))

    def inner(scope: str, kind: str, children: list[Node], own_mib: float,
              node_type: str = "module") -> Node:
        feats = {k: sum(c.features[k] for c in children) for k in FEATURE_FIELDS}
        feats["mem_bytes"] += own_mib
        energy = 1.03 * sum(c.ground_truth_energy for c in children) + 4e-5 * own_mib
        return Node(id=scope, scope=scope, parent_name="", level=0, instance_type=kind,
                    type=node_type, features=feats, ground_truth_energy=float(energy),
                    children=children)

    blocks = []
    for i in range(layers):
        p, fl, mib = f"root.layer.{i}", 2.0 * tokens * width * width / 1e6, tokens * width / 2**17
        blocks.append(inner(p, "Block", [
            leaf(f"{p}.fc1", "Linear", fl, mib),
            leaf(f"{p}.sm", "Softmax", 5.0 * batch * seq * seq / 1e6, batch * seq * seq / 2**17),
            leaf(f"{p}.fc2", "Linear", 2 * fl, 1.5 * mib),
            leaf(f"{p}.ln", "LayerNorm", 5.0 * tokens * width / 1e6, mib)], mib / 2))
    root = inner("root", "Model", [inner("root.encoder", "Encoder", blocks, 0.0)], 0.0, "model")
    return Tree(name, batch, seq, place_nodes(root))
