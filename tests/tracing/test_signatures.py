"""Node signatures describe the work: the same work shares one, different work never does."""

from __future__ import annotations

import torch
import transformers as T
from support.models import tiny_model
from torch import nn

from irene.measure import MeasurementCache, Protocol
from irene.tracing import trace_model
from irene.tracing.build import measure_records, prune
from irene.tracing.capture import ForwardCapture

B, S = 2, 8



def _bert(**kw) -> T.PreTrainedModel:
    return tiny_model("bert", **kw)


def _roberta() -> T.PreTrainedModel:
    return tiny_model("roberta", type_vocab_size=1, layer_norm_eps=1e-5)


def _signatures(tree) -> dict[str, str]:
    return {n.scope: n.extra["signature"] for n in tree.nodes()}


def test_bert_and_roberta_layers_share_the_same_work():
    bert = _signatures(trace_model(_bert(layer_norm_eps=1e-12), B, S, timing=False))
    roberta = _signatures(trace_model(_roberta(), B, S, timing=False))
    # same code on the same shapes (BertLayer vs RobertaLayer, LayerNorm eps 1e-12 vs 1e-5)
    for scope in ("root.encoder", "root.encoder.layer.0", "root.encoder.layer.0.attention",
                  "root.encoder.layer.0.output.LayerNorm", "root.pooler"):
        assert bert[scope] == roberta[scope], scope
    # different work: RoBERTa's embeddings compute position ids from the input ids
    assert bert["root.embeddings"] != roberta["root.embeddings"]
    assert bert["root"] != roberta["root"]


def test_eager_and_sdpa_attention_never_share():
    eager = _signatures(trace_model(_bert(), B, S, timing=False, attn="eager"))
    sdpa = _signatures(trace_model(_bert(), B, S, timing=False, attn="sdpa"))
    scope = "root.encoder.layer.0.attention.self"
    assert eager[scope] != sdpa[scope]
    assert eager["root.encoder"] != sdpa["root.encoder"]
    # the linear projections are the same primitive on the same shapes
    assert eager[scope + ".query"] == sdpa[scope + ".query"]


def test_dtype_and_shape_change_the_signature():
    base = _signatures(trace_model(_bert(), B, S, timing=False))
    longer = _signatures(trace_model(_bert(), B, 2 * S, timing=False))
    half = _signatures(trace_model(_bert(), B, S, timing=False, dtype="bfloat16"))
    scope = "root.encoder.layer.0"
    assert len({base[scope], longer[scope], half[scope]}) == 3


class _Wrap(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * 2.0


def _record_signatures(model: nn.Module, x: torch.Tensor) -> dict[str, str]:
    capture = ForwardCapture(model)
    with torch.no_grad(), capture:
        model(x)
    return {r.scope: r.signature for r in capture.root.walk()}


def test_tuple_attributes_and_strides_are_part_of_a_leaf():
    x = torch.randn(2, 4, 8)
    a = _record_signatures(_Wrap(nn.LayerNorm(8, elementwise_affine=False)), x)
    b = _record_signatures(_Wrap(nn.LayerNorm((4, 8), elementwise_affine=False)), x)
    assert a["root.inner"] != b["root.inner"]  # normalised over 1 vs 2 dimensions
    c = _record_signatures(_Wrap(nn.LayerNorm(8, eps=1e-3, elementwise_affine=False)), x)
    assert a["root.inner"] == c["root.inner"]  # only the epsilon differs: the same work
    y = torch.randn(1, 3, 32)
    s1 = _record_signatures(_Wrap(nn.Conv1d(3, 3, 3, stride=1, bias=False)), y)
    s2 = _record_signatures(_Wrap(nn.Conv1d(3, 3, 3, stride=2, bias=False)), y)
    assert s1["root.inner"] != s2["root.inner"]


class _Plain(nn.Module):
    """A module with a child (a leaf module with no children is an opaque primitive, named by
    its class; a module with children is described by the calls of its body)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.proj(x).transpose(0, 1), dim=-1)


class _Renamed(_Plain):  # another class, the same torch calls
    pass


class _WithCopy(_Plain):  # one more call that does no FLOPs but moves memory
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.proj(x).transpose(0, 1).contiguous(), dim=-1)


class _Holder(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_module_signature_is_its_calls_not_its_class():
    x = torch.randn(4, 6)
    plain = _record_signatures(_Holder(_Plain()), x)["root.body"]
    assert _record_signatures(_Holder(_Renamed()), x)["root.body"] == plain
    assert _record_signatures(_Holder(_WithCopy()), x)["root.body"] != plain


class _Switch(nn.Module):
    """Identical class, attributes and parameters in every layer; the work depends on the
    layer index (excluded from the class-based signature, as in models with per-layer
    attention types)."""

    def __init__(self, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.linear = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return torch.softmax(x, dim=-1) if self.layer_idx % 2 else torch.tanh(x)


class _Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Switch(i) for i in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def test_layers_doing_different_work_are_measured_apart():
    model = _Stack()
    capture = ForwardCapture(model, record_inputs=True)
    with torch.no_grad(), capture:
        model(torch.randn(3, 6))
    assert prune(capture.root)
    layers = {r.scope: r for r in capture.root.walk() if r.scope.count(".") == 2}
    sig = {scope: r.signature for scope, r in layers.items()}
    assert sig["root.layers.0"] == sig["root.layers.2"] != sig["root.layers.1"]
    # the first layer of each kind of work can be replayed; the repeat is not kept
    assert layers["root.layers.1"].replay is not None
    assert layers["root.layers.2"].replay is None
    cache = MeasurementCache()
    measured = measure_records(list(capture.root.walk()), meter=None,
                               protocol=Protocol(warmup=0, runs=1, min_run_seconds=0.0),
                               cache=cache)
    assert len(measured) == len(list(capture.root.walk()))
    assert cache.misses == len({r.signature for r in capture.root.walk()})
