"""The weights, KV cache and state of a decoder LLM, counted from its ``transformers`` config.

No model is built: every tensor of the causal-LM checkpoint is listed analytically, with the
name ``named_parameters()`` gives it in ``transformers``
(``model.layers.3.self_attn.q_proj.weight``), its element count, the module it belongs to
(:data:`MODULES`) and the bytes one element takes in the served weight format. That is fast
(milliseconds for DeepSeek-V3's 671B parameters), needs no memory, and lets a served format be
described by the same regular expressions on parameter names as
:class:`irene.tracing.serving_models.ServingFacts`. ``tests/serving/test_serving.py`` checks names
and counts against ``named_parameters()`` on the meta device for tiny Llama-style and MoE configs.

Supported families (``config.model_type``): Llama / Mistral / Qwen2 / Qwen3 style decoders
(grouped-query attention, gated MLP), Gemma 3 (text), Mixtral / Qwen3-MoE / Qwen2-MoE,
Llama 4 (text), gpt-oss, DeepSeek-V3 (multi-head latent attention, shared experts) and
Nemotron-H (Mamba-2 / attention / MLP hybrid). Another decoder whose config names the usual
fields (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``,
``vocab_size``) is read as a Llama-style decoder, and :attr:`ModelStructure.notes` says so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PretrainedConfig

#: the modules a token's energy is broken down into
MODULES = ("attention", "mlp", "experts", "shared_experts", "router", "mamba", "norms",
           "embedding", "head")

#: bytes one stored weight takes in each served format (mxfp4: 4-bit values plus one 8-bit scale
#: per 32 values = 4.25 bits; fp8 per-block scales add < 0.1 % and are ignored)
FORMAT_BYTES: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "mxfp4": 4.25 / 8}

#: the bytes of one KV-cache element and one activation (vLLM's default for bf16 checkpoints)
CACHE_BYTES = 2.0

#: model types read with the Llama-style accounting without a note
LLAMA_STYLE = {"llama", "mistral", "qwen2", "qwen3", "granite", "olmo2", "phi3", "starcoder2"}
MOE_STYLE = {"mixtral", "qwen3_moe", "qwen2_moe", "olmoe"}
#: decoders whose MLP is plain (up projection, activation, down projection: ``mlp.c_fc``,
#: ``mlp.c_proj``), not gated
PLAIN_MLP = {"starcoder2"}
#: encoder-only models: they generate no tokens, so there is no decode step to serve
ENCODER_ONLY = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2",
                "xlm-roberta", "mpnet", "camembert", "modernbert", "ernie"}


class UnsupportedArchitecture(ValueError):
    """A config whose decode step cannot be counted (not a decoder LLM, or fields missing)."""


@dataclass(frozen=True)
class Tensor:
    """One stored weight tensor: its ``transformers`` name, elements, module and layer
    (-1 outside the decoder layers); ``experts`` > 0 for a tensor holding that many routed
    experts (one slice per expert)."""

    name: str
    numel: int
    module: str
    layer: int
    experts: int = 0


@dataclass(frozen=True)
class AttentionLayer:
    """What one attention layer keeps per cached token and computes per query token.

    ``kv_bytes_per_token``: KV-cache bytes of one token of one sequence (whole layer, all KV
    heads); ``kv_heads``: the number of KV heads (tensor parallelism splits the cache over at
    most that many GPUs; 1 for a latent cache, which every tensor-parallel rank keeps whole);
    ``flops_per_context_token``: attention FLOPs of one query token per cached token (scores and
    weighted sum); ``window``: tokens attended to at most (sliding window or chunk), 0 = all.
    """

    kv_bytes_per_token: float
    kv_heads: int
    flops_per_context_token: float
    window: int = 0


@dataclass(frozen=True)
class RecurrentLayer:
    """A Mamba-2 layer: its recurrent state (conv + SSM) of one sequence, in bytes, read and
    written once per decode step, and the state-update FLOPs of one token."""

    state_bytes: float
    flops_per_token: float
    heads: int


@dataclass
class ModelStructure:
    """Every weight tensor of a causal LM plus its attention / recurrent layers.

    ``weight_format`` is the served format of the tensors whose names match ``quantized`` (the
    rest are bf16); ``experts``/``experts_per_token`` describe the routed experts (0 when dense);
    ``attention_heads``: query heads per attention layer.
    """

    model_type: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    tensors: list[Tensor]
    attention: dict[int, AttentionLayer]
    recurrent: dict[int, RecurrentLayer]
    experts: int = 0
    experts_per_token: int = 0
    attention_heads: int = 0
    weight_format: str = "bf16"
    quantized: str = ""
    notes: list[str] = field(default_factory=list)
    #: the output head reuses the input embedding matrix (no ``lm_head`` tensor stored, but the
    #: head GEMM still runs every step)
    tied_embeddings: bool = False
    #: the most tokens (prompt + output) a sequence may hold (0: not declared)
    max_positions: int = 0

    @property
    def is_moe(self) -> bool:
        """Whether some layer routes tokens to experts."""
        return self.experts > 0

    @property
    def architecture(self) -> str:
        """``dense``, ``moe`` or ``hybrid`` (recurrent layers), as ML.ENERGY names them."""
        if self.recurrent:
            return "hybrid"
        return "moe" if self.is_moe else "dense"

    def bytes_per_element(self, tensor: Tensor) -> float:
        """Stored bytes of one element of ``tensor`` in the served format."""
        if self.quantized and re.search(self.quantized, tensor.name):
            return FORMAT_BYTES[self.weight_format]
        return FORMAT_BYTES["bf16"]

    def weight_groups(self) -> list[tuple[int, str, int, float, int]]:
        """The tensors aggregated per (layer, module, bytes per element, experts): tuples
        ``(layer, module, elements, bytes_per_element, experts)``, in tensor order (computed
        once: the served format must be set before the first call)."""
        cached = self.__dict__.get("_groups")
        if cached is not None and cached[0] == (self.weight_format, self.quantized):
            return cached[1]
        groups: dict[tuple[int, str, float, int], int] = {}
        for t in self.tensors:
            key = (t.layer, t.module, self.bytes_per_element(t), t.experts)
            groups[key] = groups.get(key, 0) + t.numel
        out = [(layer, module, n, element, experts)
               for (layer, module, element, experts), n in groups.items()]
        self.__dict__["_groups"] = ((self.weight_format, self.quantized), out)
        return out

    def total_params(self) -> int:
        """All stored parameters (the routed experts included)."""
        return sum(t.numel for t in self.tensors)

    def active_params(self) -> float:
        """Parameters used by one token: every tensor, routed experts at ``k / E``."""
        return sum(t.numel * (self.experts_per_token / t.experts if t.experts else 1.0)
                   for t in self.tensors)

    def weight_bytes(self) -> float:
        """Stored bytes of all weights in the served format."""
        return sum(t.numel * self.bytes_per_element(t) for t in self.tensors)

# --------------------------------------------------------------------------- reading configs

def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def _int(config: Any, *names: str, default: int | None = None) -> int:
    value = _get(config, *names, default=default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UnsupportedArchitecture(
            f"config field {names[0]!r} missing or not a non-negative integer (got {value!r})")
    return value


def text_config(config: PretrainedConfig) -> PretrainedConfig:
    """The language-model part of a multimodal config (``text_config``), else ``config``."""
    inner = getattr(config, "text_config", None)
    return inner if inner is not None and hasattr(inner, "num_hidden_layers") else config


def structure_of(config: PretrainedConfig, *, weight_format: str = "bf16",
                 quantized: str = "") -> ModelStructure:
    """Count the tensors, KV cache and state of ``config`` (see the module docstring).

    ``weight_format`` (:data:`FORMAT_BYTES`) applies to the tensors whose names match the
    regular expression ``quantized``; everything else is stored in bf16.
    """
    if weight_format not in FORMAT_BYTES:
        raise UnsupportedArchitecture(f"unknown weight format {weight_format!r} "
                                      f"(known: {', '.join(FORMAT_BYTES)})")
    config = text_config(config)
    model_type = str(getattr(config, "model_type", "") or "")
    notes: list[str] = []
    if model_type == "deepseek_v3":
        builder = _DeepseekV3(config)
    elif model_type == "nemotron_h":
        builder = _NemotronH(config)
    elif model_type in ("llama4_text", "llama4"):
        builder = _Llama4(config)
    elif model_type == "gpt_oss":
        builder = _GptOss(config)
    elif model_type in ("gemma3_text", "gemma3", "gemma2"):
        builder = _Gemma3(config)
    elif model_type in MOE_STYLE or (_get(config, "num_local_experts", "num_experts")
                                     and model_type not in LLAMA_STYLE):
        builder = _Decoder(config)
        if model_type not in MOE_STYLE:
            notes.append(f"model type {model_type!r} read as a Mixtral-style MoE decoder")
    else:
        for needed in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                       "intermediate_size", "vocab_size"):
            if getattr(config, needed, None) is None:
                raise UnsupportedArchitecture(
                    f"model type {model_type or '?'!r}: not a decoder LLM this estimate can "
                    f"count (config has no {needed!r})")
        if model_type in ENCODER_ONLY:
            raise UnsupportedArchitecture(
                f"model type {model_type!r} is an encoder: it generates no tokens, so there is "
                "no decode step to serve (estimate its forward pass without --serving)")
        if getattr(config, "is_encoder_decoder", False):
            raise UnsupportedArchitecture(f"model type {model_type!r}: encoder-decoder models "
                                          "are not supported (decoder-only LLMs only)")
        builder = _Decoder(config)
        if model_type not in LLAMA_STYLE:
            notes.append(f"model type {model_type!r} read as a Llama-style decoder (grouped-"
                         "query attention, gated MLP); its own layers may differ")
    structure = builder.build()
    structure.weight_format = weight_format
    structure.quantized = quantized
    structure.notes.extend(notes)
    if quantized:
        try:
            pattern = re.compile(quantized)
        except re.error as exc:
            raise UnsupportedArchitecture(f"bad pattern of quantized weights: {exc}") from exc
        if not any(pattern.search(t.name) for t in structure.tensors):
            raise UnsupportedArchitecture(f"no weight matches the quantized pattern {quantized!r}")
    return structure


# --------------------------------------------------------------------------- builders

class _Decoder:
    """Llama-style decoder: GQA attention, gated MLP or routed experts (Mixtral/Qwen-MoE)."""

    embedding_name = "model.embed_tokens.weight"
    final_norm_name = "model.norm.weight"
    mlp_prefix = "mlp"
    #: layer norms per decoder layer
    layer_norms: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm")

    def __init__(self, config: Any) -> None:
        self.c = config
        self.hidden = _int(config, "hidden_size")
        self.layers = _int(config, "num_hidden_layers")
        self.vocab = _int(config, "vocab_size")
        self.heads = _int(config, "num_attention_heads")
        self.kv_heads = _int(config, "num_key_value_heads", default=self.heads) or self.heads
        head_dim = _get(config, "head_dim")
        self.head_dim = head_dim if isinstance(head_dim, int) and head_dim > 0 \
            else self.hidden // max(self.heads, 1)
        if min(self.hidden, self.layers, self.vocab, self.heads) <= 0:
            raise UnsupportedArchitecture("config has a zero size (hidden, layers, vocab, heads)")
        self.experts = int(_get(config, "num_local_experts", "num_experts", "n_routed_experts",
                                default=0) or 0)
        self.top_k = int(_get(config, "num_experts_per_tok", "moe_topk", default=0) or 0)
        self.tensors: list[Tensor] = []
        self.attention: dict[int, AttentionLayer] = {}
        self.recurrent: dict[int, RecurrentLayer] = {}

    # -- helpers
    def add(self, name: str, numel: int, module: str, layer: int = -1, experts: int = 0) -> None:
        self.tensors.append(Tensor(name, int(numel), module, layer, experts))

    def linear(self, prefix: str, n_in: int, n_out: int, module: str, layer: int,
               bias: bool = False) -> None:
        self.add(f"{prefix}.weight", n_in * n_out, module, layer)
        if bias:
            self.add(f"{prefix}.bias", n_out, module, layer)

    def layer_types(self) -> list[str]:
        types = _get(self.c, "layer_types")
        if isinstance(types, list) and len(types) == self.layers:
            return [str(t) for t in types]
        return ["full_attention"] * self.layers

    def window(self, kind: str) -> int:
        if kind == "sliding_attention":
            return int(_get(self.c, "sliding_window", default=0) or 0)
        if kind == "chunked_attention":
            return int(_get(self.c, "attention_chunk_size", default=0) or 0)
        return 0

    # -- parts
    def add_gqa(self, p: str, i: int, kind: str, bias: bool, qk_norm: bool) -> None:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.linear(f"{p}.self_attn.q_proj", self.hidden, q, "attention", i, bias)
        self.linear(f"{p}.self_attn.k_proj", self.hidden, kv, "attention", i, bias)
        self.linear(f"{p}.self_attn.v_proj", self.hidden, kv, "attention", i, bias)
        self.linear(f"{p}.self_attn.o_proj", q, self.hidden, "attention", i, bias)
        if qk_norm:
            self.add(f"{p}.self_attn.q_norm.weight", self.head_dim, "attention", i)
            self.add(f"{p}.self_attn.k_norm.weight", self.head_dim, "attention", i)
        self.attention[i] = AttentionLayer(
            kv_bytes_per_token=2 * self.kv_heads * self.head_dim * CACHE_BYTES,
            kv_heads=self.kv_heads,
            flops_per_context_token=4.0 * self.heads * self.head_dim,
            window=self.window(kind))

    def add_gated_mlp(self, prefix: str, ffn: int, module: str, i: int, bias: bool = False) -> None:
        self.linear(f"{prefix}.gate_proj", self.hidden, ffn, module, i, bias)
        self.linear(f"{prefix}.up_proj", self.hidden, ffn, module, i, bias)
        self.linear(f"{prefix}.down_proj", ffn, self.hidden, module, i, bias)

    def add_experts(self, prefix: str, ffn: int, i: int, bias: bool = False) -> None:
        e = self.experts
        self.add(f"{prefix}.experts.gate_up_proj", e * 2 * ffn * self.hidden, "experts", i, e)
        if bias:
            self.add(f"{prefix}.experts.gate_up_proj_bias", e * 2 * ffn, "experts", i, e)
        self.add(f"{prefix}.experts.down_proj", e * ffn * self.hidden, "experts", i, e)
        if bias:
            self.add(f"{prefix}.experts.down_proj_bias", e * self.hidden, "experts", i, e)

    def add_norms(self, p: str, i: int) -> None:
        for norm in self.layer_norms:
            self.add(f"{p}.{norm}.weight", self.hidden, "norms", i)

    def add_ends(self) -> None:
        self.tensors.insert(0, Tensor(self.embedding_name, self.vocab * self.hidden,
                                      "embedding", -1))
        self.add(self.final_norm_name, self.hidden, "norms")
        if not getattr(self.c, "tie_word_embeddings", False):
            self.add("lm_head.weight", self.vocab * self.hidden, "head")

    # -- layers
    def is_moe_layer(self, i: int) -> bool:
        if not self.experts or not self.top_k:
            return False
        only_mlp = _get(self.c, "mlp_only_layers", default=[]) or []
        step = int(_get(self.c, "decoder_sparse_step", default=1) or 1)
        return i not in only_mlp and (i + 1) % step == 0

    def add_layer(self, i: int, kind: str) -> None:
        p = f"model.layers.{i}"
        qk_norm = self.c.model_type in ("qwen3", "qwen3_moe", "olmo2")
        self.add_gqa(p, i, kind, bool(_get(self.c, "attention_bias", "use_bias", default=False)),
                     qk_norm)
        if self.is_moe_layer(i):
            ffn = _int(self.c, "moe_intermediate_size", "intermediate_size")
            self.linear(f"{p}.{self.mlp_prefix}.gate", self.hidden, self.experts, "router", i)
            self.add_experts(f"{p}.{self.mlp_prefix}", ffn, i)
            shared = int(_get(self.c, "shared_expert_intermediate_size", default=0) or 0)
            if shared:
                self.add_gated_mlp(f"{p}.mlp.shared_expert", shared, "shared_experts", i)
                self.linear(f"{p}.mlp.shared_expert_gate", self.hidden, 1, "router", i)
        elif self.c.model_type in PLAIN_MLP:
            bias = bool(_get(self.c, "use_bias", "mlp_bias", default=False))
            ffn = _int(self.c, "intermediate_size")
            self.linear(f"{p}.mlp.c_fc", self.hidden, ffn, "mlp", i, bias)
            self.linear(f"{p}.mlp.c_proj", ffn, self.hidden, "mlp", i, bias)
        else:
            self.add_gated_mlp(f"{p}.{self.mlp_prefix}", _int(self.c, "intermediate_size"), "mlp",
                               i, bool(_get(self.c, "mlp_bias", default=False)))
        self.add_norms(p, i)

    def build(self) -> ModelStructure:
        for i, kind in enumerate(self.layer_types()):
            self.add_layer(i, kind)
        self.add_ends()
        moe = any(t.experts for t in self.tensors)
        return ModelStructure(
            model_type=str(self.c.model_type), hidden_size=self.hidden, num_layers=self.layers,
            vocab_size=self.vocab, tensors=self.tensors, attention=self.attention,
            recurrent=self.recurrent, experts=self.experts if moe else 0,
            experts_per_token=self.top_k if moe else 0, attention_heads=self.heads,
            tied_embeddings=not any(t.module == "head" for t in self.tensors))


class _Gemma3(_Decoder):
    layer_norms = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                   "post_feedforward_layernorm")

    def add_layer(self, i: int, kind: str) -> None:
        p = f"model.layers.{i}"
        self.add_gqa(p, i, kind, bool(_get(self.c, "attention_bias", default=False)),
                     qk_norm=self.c.model_type != "gemma2")
        self.add_gated_mlp(f"{p}.mlp", _int(self.c, "intermediate_size"), "mlp", i)
        self.add_norms(p, i)


class _GptOss(_Decoder):
    def add_layer(self, i: int, kind: str) -> None:
        p = f"model.layers.{i}"
        self.add(f"{p}.self_attn.sinks", self.heads, "attention", i)
        self.add_gqa(p, i, kind, bias=True, qk_norm=False)
        self.linear(f"{p}.mlp.router", self.hidden, self.experts, "router", i, bias=True)
        self.add_experts(f"{p}.mlp", _int(self.c, "intermediate_size"), i, bias=True)
        self.add_norms(p, i)


class _Llama4(_Decoder):
    mlp_prefix = "feed_forward"

    def is_moe_layer(self, i: int) -> bool:
        layers = _get(self.c, "moe_layers")
        if isinstance(layers, list):
            return i in layers
        step = int(_get(self.c, "interleave_moe_layer_step", default=1) or 1)
        return (i + 1) % step == 0

    def add_layer(self, i: int, kind: str) -> None:
        p = f"model.layers.{i}"
        self.add_gqa(p, i, kind, bool(_get(self.c, "attention_bias", default=False)), False)
        if self.is_moe_layer(i):
            ffn = _int(self.c, "intermediate_size")
            self.add_experts(f"{p}.feed_forward", ffn, i)
            self.linear(f"{p}.feed_forward.router", self.hidden, self.experts, "router", i)
            self.add_gated_mlp(f"{p}.feed_forward.shared_expert", ffn, "shared_experts", i)
        else:
            self.add_gated_mlp(f"{p}.feed_forward",
                               _int(self.c, "intermediate_size_mlp", "intermediate_size"), "mlp", i)
        self.add_norms(p, i)


class _DeepseekV3(_Decoder):
    """Multi-head latent attention (MLA) and routed + shared experts after the first dense
    layers. The cache holds one latent vector and one rotary key per token (vLLM's MLA), which
    every tensor-parallel rank keeps whole; attention FLOPs are those of the absorbed form."""

    def add_layer(self, i: int, kind: str) -> None:
        c, p, h = self.c, f"model.layers.{i}", self.hidden
        bias = bool(_get(c, "attention_bias", default=False))
        nope, rope, v = (_int(c, "qk_nope_head_dim"), _int(c, "qk_rope_head_dim"),
                         _int(c, "v_head_dim"))
        q_lora, kv_lora = _get(c, "q_lora_rank"), _int(c, "kv_lora_rank")
        a = f"{p}.self_attn"
        if q_lora:
            self.linear(f"{a}.q_a_proj", h, q_lora, "attention", i, bias)
            self.add(f"{a}.q_a_layernorm.weight", q_lora, "attention", i)
            self.linear(f"{a}.q_b_proj", q_lora, self.heads * (nope + rope), "attention", i)
        else:
            self.linear(f"{a}.q_proj", h, self.heads * (nope + rope), "attention", i)
        self.linear(f"{a}.kv_a_proj_with_mqa", h, kv_lora + rope, "attention", i, bias)
        self.add(f"{a}.kv_a_layernorm.weight", kv_lora, "attention", i)
        self.linear(f"{a}.kv_b_proj", kv_lora, self.heads * (nope + v), "attention", i)
        self.linear(f"{a}.o_proj", self.heads * v, h, "attention", i, bias)
        self.attention[i] = AttentionLayer(
            kv_bytes_per_token=(kv_lora + rope) * CACHE_BYTES, kv_heads=1,
            flops_per_context_token=2.0 * self.heads * (2 * kv_lora + rope))
        if i >= int(_get(c, "first_k_dense_replace", default=0) or 0) and self.experts:
            ffn = _int(c, "moe_intermediate_size")
            self.add_experts(f"{p}.mlp", ffn, i)
            self.linear(f"{p}.mlp.gate", h, self.experts, "router", i)  # + a bias buffer
            shared = int(_get(c, "n_shared_experts", default=0) or 0)
            if shared:
                self.add_gated_mlp(f"{p}.mlp.shared_experts", ffn * shared, "shared_experts", i)
        else:
            self.add_gated_mlp(f"{p}.mlp", _int(c, "intermediate_size"), "mlp", i)
        self.add_norms(p, i)


class _NemotronH(_Decoder):
    """Mamba-2 / attention / MLP blocks (``layer_types``), one norm per block."""

    embedding_name = "model.embeddings.weight"
    final_norm_name = "model.norm_f.weight"

    def layer_types(self) -> list[str]:
        types = _get(self.c, "layer_types", "layers_block_type")
        if not isinstance(types, list) or len(types) != self.layers:
            raise UnsupportedArchitecture("nemotron_h config without layer types")
        return [str(t) for t in types]

    def add_layer(self, i: int, kind: str) -> None:
        c, p, h = self.c, f"model.layers.{i}", self.hidden
        self.add(f"{p}.norm.weight", h, "norms", i)
        m = f"{p}.mixer"
        if kind in ("linear_attention", "mamba"):
            heads, head_dim = _int(c, "mamba_num_heads"), _int(c, "mamba_head_dim")
            groups, state, kernel = _int(c, "n_groups"), _int(c, "ssm_state_size"), \
                _int(c, "conv_kernel")
            inner = heads * head_dim
            conv = inner + 2 * groups * state
            bias = bool(_get(c, "use_bias", "mamba_proj_bias", default=False))
            for name in ("dt_bias", "A_log", "D"):
                self.add(f"{m}.{name}", heads, "mamba", i)
            self.add(f"{m}.conv1d.weight", conv * kernel, "mamba", i)
            if _get(c, "use_conv_bias", default=True):
                self.add(f"{m}.conv1d.bias", conv, "mamba", i)
            self.linear(f"{m}.in_proj", h, inner + conv + heads, "mamba", i, bias)
            self.add(f"{m}.norm.weight", inner, "mamba", i)
            self.linear(f"{m}.out_proj", inner, h, "mamba", i, bias)
            ssm_bytes = 4.0 if str(_get(c, "mamba_ssm_cache_dtype", default="")) == "float32" \
                else CACHE_BYTES
            self.recurrent[i] = RecurrentLayer(
                state_bytes=inner * state * ssm_bytes + conv * (kernel - 1) * CACHE_BYTES,
                flops_per_token=6.0 * inner * state, heads=heads)
        elif kind in ("attention", "full_attention"):
            bias = bool(_get(c, "attention_bias", default=False))
            q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
            for name, n_in, n_out in (("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv),
                                      ("o_proj", q, h)):
                self.linear(f"{m}.{name}", n_in, n_out, "attention", i, bias)
            self.attention[i] = AttentionLayer(
                kv_bytes_per_token=2 * self.kv_heads * self.head_dim * CACHE_BYTES,
                kv_heads=self.kv_heads, flops_per_context_token=4.0 * self.heads * self.head_dim)
        elif kind == "mlp":
            bias = bool(_get(c, "mlp_bias", default=False))
            ffn = _int(c, "intermediate_size")
            self.linear(f"{m}.up_proj", h, ffn, "mlp", i, bias)
            self.linear(f"{m}.down_proj", ffn, h, "mlp", i, bias)
        else:
            raise UnsupportedArchitecture(f"nemotron_h layer type {kind!r} is not supported")

    def build(self) -> ModelStructure:
        self.experts = self.top_k = 0  # Nano v2 has no MoE blocks (the config's defaults)
        return super().build()


def expected_distinct_experts(experts: int, top_k: int, tokens: float) -> float:
    """Expected number of distinct experts that ``tokens`` tokens touch in one layer when each
    picks ``top_k`` of ``experts`` uniformly: E · (1 − (1 − k/E)^B)."""
    if experts <= 0 or top_k <= 0 or tokens <= 0:
        return 0.0
    return experts * (1.0 - math.pow(1.0 - min(top_k, experts) / experts, tokens))
