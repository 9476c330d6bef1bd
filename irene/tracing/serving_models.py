"""Built-in architectures of the LLMs measured by the ML.ENERGY Benchmark v3 (vLLM serving).

Every checkpoint of the benchmark's LLM tasks (``datasets/mlenergy-v3``) has an entry here: a
``transformers`` config written from public facts (no download), named by its Hugging Face id,
plus short aliases. :data:`SERVING_MODELS` is merged into
:data:`irene.tracing.registry.BUILTIN_MODELS`, so ``build_model("Qwen/Qwen3-8B")`` works offline.

Where the numbers come from (read through public GitHub repositories, commits in
``datasets/mlenergy-v3/README.md``):

* ``AIC`` — the Hugging Face ``config.json`` files vendored by NVIDIA's ai-dynamo/aiconfigurator
  (``aic-core/src/aiconfigurator_core/model_configs/<org>--<model>_config.json``);
* ``SLIME`` — THUDM/slime ``scripts/models/<model>.sh`` (Megatron arguments converted from the HF
  configs);
* ``DSV3`` — deepseek-ai/DeepSeek-V3 ``inference/configs/config_671B.json``,
  ``config_v3.1.json``, ``README.md`` and ``README_WEIGHTS.md``;
* ``KERAS`` — exact parameter counts of the converted checkpoints in keras-team/keras-hub
  ``keras_hub/src/models/<family>/<family>_presets.py`` (``"params"``);
* ``MBRIDGE`` — NVIDIA-NeMo/Megatron-Bridge ``docs/models/nemotron/nemotronh.md`` (Nano v2);
* ``GEMMA3-HF`` — the gemma-3-27b-it text config as copied in NVIDIA/TensorRT-LLM's and others'
  tests (62 layers, 5376 hidden, 21504 FFN, 32/16 heads, head dim 128, query scale 168);
  gemma-3-12b-it: 48 layers, 3840 hidden, 15360 FFN, 16/8 heads, head dim 256 (HF config), both
  checked against KERAS' exact text-only counts;
* ``META`` — meta-llama/llama-models ``models/llama3_1|llama3_3|llama4/MODEL_CARD.md`` and the
  fp8 scheme in ``models/llama3/quantization/loader.py``, ``models/llama4/quantization/loader.py``;
* ``QWEN`` — QwenLM/Qwen3 and QwenLM/Qwen3-Coder ``README.md``; ``OPENAI`` — openai/gpt-oss
  ``README.md``.

Only the language model is built: gemma-3 and Llama 4 are served as multimodal checkpoints, but
the benchmark's LLM tasks send text only, so the vision tower never runs. Hyper-parameters that do
not change the computation of a decode step (token ids, initialiser ranges) are left at defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PretrainedConfig

#: how many bits one stored weight takes in each served weight format (per-block scales included
#: for mxfp4: 4-bit E2M1 values plus one 8-bit E8M0 scale per 32 values; fp8 block/row scales add
#: under 0.1 % and are ignored)
FORMAT_BITS: dict[str, float] = {"bf16": 16.0, "fp8": 8.0, "mxfp4": 4.25}


@dataclass(frozen=True)
class PublicCount:
    """A parameter count as published: ``value`` parameters, given to ``resolution`` (the unit of
    the last published digit: 1 for an exact count, 1e8 for "3.3B"), and where it is published.

    Vendors round their figures down as often as to the nearest unit (Qwen3-30B-A3B's 3.35B
    active parameters are published as "3.3B").
    """

    value: float
    resolution: float
    source: str
    #: the published figure counts a vision encoder this registry does not build (Llama 4)
    includes_vision: bool = False


@dataclass(frozen=True)
class ServingFacts:
    """Public facts about one served checkpoint beyond its architecture.

    ``weight_format``: how the weights are stored as served (``bf16``, ``fp8``, ``mxfp4``);
    ``quantized``: regular expression on ``named_parameters()`` names (of the ``...ForCausalLM``
    model) of the weights stored in ``weight_format`` (the rest are bf16; empty for bf16);
    ``total``/``active``: published parameter counts (language model; ``active`` = parameters used
    per token, MoE only); ``active_counts_embedding``: whether the published active count includes
    the input embedding matrix (the output head is always counted).
    """

    architecture: str
    weight_format: str
    quantized: str
    total: PublicCount
    active: PublicCount | None
    active_counts_embedding: bool
    sources: str


# --------------------------------------------------------------------------- config builders

def _rope(config: PretrainedConfig, theta: float, **extra: float | str) -> PretrainedConfig:
    """Set the rotary parameters in transformers>=5's ``rope_parameters`` layout."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    params.update({"rope_type": params.get("rope_type", "default"), "rope_theta": theta, **extra})
    config.rope_parameters = params
    return config


def _served(config: PretrainedConfig) -> PretrainedConfig:
    """Served activations are bf16 for every measured model."""
    config.dtype = "bfloat16"
    return config


def _qwen3_dense(hidden: int, layers: int, heads: int, ffn: int) -> PretrainedConfig:
    from transformers import Qwen3Config

    config = Qwen3Config(vocab_size=151936, hidden_size=hidden, intermediate_size=ffn,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=8, head_dim=128, hidden_act="silu",
                         max_position_embeddings=40960, rms_norm_eps=1e-6,
                         tie_word_embeddings=False, attention_bias=False)
    return _served(_rope(config, 1_000_000.0))


def _qwen3_8b() -> PretrainedConfig:
    """Qwen/Qwen3-8B: AIC (Qwen--Qwen3-8B), SLIME qwen3-8B.sh; total 8,190,735,360 (KERAS)."""
    return _qwen3_dense(hidden=4096, layers=36, heads=32, ffn=12288)


def _qwen3_14b() -> PretrainedConfig:
    """Qwen/Qwen3-14B: SLIME qwen3-14B.sh; total 14,768,307,200 (KERAS)."""
    return _qwen3_dense(hidden=5120, layers=40, heads=40, ffn=17408)


def _qwen3_32b() -> PretrainedConfig:
    """Qwen/Qwen3-32B: AIC (Qwen--Qwen3-32B), SLIME qwen3-32B.sh; total 32,762,123,264 (KERAS)."""
    return _qwen3_dense(hidden=5120, layers=64, heads=64, ffn=25600)


def _qwen3_moe(hidden: int, layers: int, heads: int, kv_heads: int, ffn: int, moe_ffn: int,
               experts: int, context: int, theta: float) -> PretrainedConfig:
    from transformers import Qwen3MoeConfig

    config = Qwen3MoeConfig(vocab_size=151936, hidden_size=hidden, intermediate_size=ffn,
                            moe_intermediate_size=moe_ffn, num_hidden_layers=layers,
                            num_attention_heads=heads, num_key_value_heads=kv_heads,
                            head_dim=128, num_experts=experts, num_experts_per_tok=8,
                            norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                            hidden_act="silu", max_position_embeddings=context,
                            rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False)
    return _served(_rope(config, theta))


def _qwen3_30b_a3b() -> PretrainedConfig:
    """Qwen3-30B-A3B (-Instruct/-Thinking-2507, Coder-30B-A3B-Instruct): AIC (Qwen--Qwen3-30B-A3B),
    SLIME qwen3-30B-A3B.sh; 262,144-token context of the 2507/Coder releases (QWEN README);
    total 30,532,122,624 (KERAS qwen3_moe_30b_a3b_en and qwen3_coder_instruct_30b_a3b_en)."""
    return _qwen3_moe(hidden=2048, layers=48, heads=32, kv_heads=4, ffn=6144, moe_ffn=768,
                      experts=128, context=262144, theta=1_000_000.0)


def _qwen3_235b_a22b() -> PretrainedConfig:
    """Qwen3-235B-A22B (-Instruct/-Thinking-2507 and their -FP8): AIC (Qwen--Qwen3-235B-A22B,
    -FP8), SLIME qwen3-235B-A22B.sh; total 235,093,634,560 (KERAS qwen3_moe_235b_a22b_en).
    The rotary base is the original release's (AIC); the 2507 checkpoints' may differ, which does
    not change the computation."""
    return _qwen3_moe(hidden=4096, layers=94, heads=64, kv_heads=4, ffn=12288, moe_ffn=1536,
                      experts=128, context=262144, theta=1_000_000.0)


def _qwen3_coder_480b_a35b() -> PretrainedConfig:
    """Qwen/Qwen3-Coder-480B-A35B-Instruct (and -FP8): AIC
    (Qwen--Qwen3-Coder-480B-A35B-Instruct); 480B total, 35B active (QWEN Qwen3-Coder README)."""
    return _qwen3_moe(hidden=6144, layers=62, heads=96, kv_heads=8, ffn=8192, moe_ffn=2560,
                      experts=160, context=262144, theta=10_000_000.0)


def _deepseek_v3() -> PretrainedConfig:
    """DeepSeek-V3 architecture (DeepSeek-R1-0528, DeepSeek-V3.1): DSV3 config_671B.json and
    config_v3.1.json (same shapes), AIC (deepseek-ai--DeepSeek-V3, -R1). The multi-token-prediction
    module (README_WEIGHTS.md: 11.5B, not used by plain decoding) is left out."""
    from transformers import DeepseekV3Config

    config = DeepseekV3Config(vocab_size=129280, hidden_size=7168, intermediate_size=18432,
                              moe_intermediate_size=2048, num_hidden_layers=61,
                              num_attention_heads=128, num_key_value_heads=128,
                              n_shared_experts=1, n_routed_experts=256, num_experts_per_tok=8,
                              first_k_dense_replace=3, n_group=8, topk_group=4,
                              routed_scaling_factor=2.5, norm_topk_prob=True,
                              q_lora_rank=1536, kv_lora_rank=512, qk_rope_head_dim=64,
                              qk_nope_head_dim=128, v_head_dim=128, hidden_act="silu",
                              max_position_embeddings=163840, rms_norm_eps=1e-6,
                              tie_word_embeddings=False, attention_bias=False, num_mtp_layers=0)
    return _served(_rope(config, 10000.0))


def _gemma3_text(hidden: int, layers: int, heads: int, kv_heads: int, head_dim: int, ffn: int,
                 query_scale: int) -> PretrainedConfig:
    from transformers import Gemma3TextConfig

    # 5 sliding-window (1024) layers, then 1 global, repeated (sliding_window_pattern = 6)
    layer_types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                   for i in range(layers)]
    config = Gemma3TextConfig(vocab_size=262208, hidden_size=hidden, intermediate_size=ffn,
                              num_hidden_layers=layers, num_attention_heads=heads,
                              num_key_value_heads=kv_heads, head_dim=head_dim,
                              hidden_activation="gelu_pytorch_tanh",
                              max_position_embeddings=131072, rms_norm_eps=1e-6,
                              query_pre_attn_scalar=query_scale, sliding_window=1024,
                              layer_types=layer_types, tie_word_embeddings=True)
    config.rope_parameters = {
        "full_attention": {"rope_type": "linear", "rope_theta": 1_000_000.0, "factor": 8.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
    }
    return _served(config)


def _gemma3_12b() -> PretrainedConfig:
    """google/gemma-3-12b-it, language model: GEMMA3-HF; text-only total 11,765,788,416
    (KERAS gemma3_instruct_12b_text)."""
    return _gemma3_text(hidden=3840, layers=48, heads=16, kv_heads=8, head_dim=256, ffn=15360,
                        query_scale=256)


def _gemma3_27b() -> PretrainedConfig:
    """google/gemma-3-27b-it, language model: GEMMA3-HF; text-only total 27,009,002,240
    (KERAS gemma3_instruct_27b_text)."""
    return _gemma3_text(hidden=5376, layers=62, heads=32, kv_heads=16, head_dim=128, ffn=21504,
                        query_scale=168)


def _llama3(hidden: int, layers: int, heads: int, ffn: int) -> PretrainedConfig:
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=128256, hidden_size=hidden, intermediate_size=ffn,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=8, head_dim=128, hidden_act="silu",
                         max_position_embeddings=131072, rms_norm_eps=1e-5,
                         tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    return _served(_rope(config, 500_000.0, rope_type="llama3", factor=8.0,
                         low_freq_factor=1.0, high_freq_factor=4.0,
                         original_max_position_embeddings=8192))


def _llama31_8b() -> PretrainedConfig:
    """meta-llama/Llama-3.1-8B-Instruct: AIC (meta-llama--Meta-Llama-3.1-8B), SLIME
    llama3.1-8B-Instruct.sh; total 8,030,261,248 (KERAS llama3_8b_en, same shapes)."""
    return _llama3(hidden=4096, layers=32, heads=32, ffn=14336)


def _llama31_70b() -> PretrainedConfig:
    """meta-llama/Llama-3.1-70B-Instruct and Llama-3.3-70B-Instruct (same architecture, META
    llama3_3 MODEL_CARD): AIC (meta-llama--Meta-Llama-3.1-70B); 70B (META)."""
    return _llama3(hidden=8192, layers=80, heads=64, ffn=28672)


def _llama31_405b() -> PretrainedConfig:
    """meta-llama/Llama-3.1-405B-Instruct (and -FP8): AIC (meta-llama--Meta-Llama-3.1-405B);
    405B (META)."""
    return _llama3(hidden=16384, layers=126, heads=128, ffn=53248)


def _llama4(experts: int, moe_step: int, context: int) -> PretrainedConfig:
    from transformers import Llama4TextConfig

    layers = 48
    moe_layers = list(range(moe_step - 1, layers, moe_step))
    config = Llama4TextConfig(vocab_size=202048, hidden_size=5120, intermediate_size=8192,
                              intermediate_size_mlp=16384, num_hidden_layers=layers,
                              num_attention_heads=40, num_key_value_heads=8, head_dim=128,
                              hidden_act="silu", max_position_embeddings=context,
                              rms_norm_eps=1e-5, num_experts_per_tok=1,
                              num_local_experts=experts, interleave_moe_layer_step=moe_step,
                              moe_layers=moe_layers, attention_chunk_size=8192,
                              tie_word_embeddings=False, attention_bias=False)
    return _served(_rope(config, 500_000.0))


def _llama4_scout() -> PretrainedConfig:
    """meta-llama/Llama-4-Scout-17B-16E-Instruct, language model: AIC
    (meta-llama--Llama-4-Scout-17B-16E-Instruct text_config); 109B total / 17B active (META
    llama4 MODEL_CARD, whole checkpoint)."""
    return _llama4(experts=16, moe_step=1, context=10485760)


def _llama4_maverick() -> PretrainedConfig:
    """meta-llama/Llama-4-Maverick-17B-128E-Instruct(-FP8), language model: AIC
    (meta-llama--Llama-4-Maverick-17B-128E-Instruct; MoE every 2nd layer); 400B / 17B (META)."""
    return _llama4(experts=128, moe_step=2, context=1048576)


def _nemotron_nano(hidden: int, pattern: str, ffn: int) -> PretrainedConfig:
    from transformers import NemotronHConfig

    config = NemotronHConfig(vocab_size=131072, hidden_size=hidden,
                             hybrid_override_pattern=pattern, num_attention_heads=40,
                             num_key_value_heads=8, head_dim=128, intermediate_size=ffn,
                             mlp_hidden_act="relu2", mamba_num_heads=128, mamba_head_dim=80,
                             ssm_state_size=128, n_groups=8, conv_kernel=4, expand=2,
                             use_conv_bias=True, mamba_proj_bias=False, attention_bias=False,
                             mlp_bias=False, max_position_embeddings=131072,
                             tie_word_embeddings=False, layer_norm_epsilon=1e-5)
    return _served(config)


def _nemotron_nano_9b_v2() -> PretrainedConfig:
    """nvidia/NVIDIA-Nemotron-Nano-9B-v2: MBRIDGE (56 layers, pattern, 4480 hidden, 15680 FFN,
    128 Mamba heads x 80, state 128), 40/8 attention heads and 131072 vocabulary as in the HF
    config copied by several public converters; 9B (MBRIDGE)."""
    return _nemotron_nano(4480, "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-", 15680)


def _nemotron_nano_12b_v2() -> PretrainedConfig:
    """nvidia/NVIDIA-Nemotron-Nano-12B-v2: MBRIDGE (62 layers, pattern, 5120 hidden, 20480 FFN,
    128 Mamba heads x 80, state 128; NemotronNano12Bv2 defaults in
    src/megatron/bridge/models/nemotron_vl/nemotron_vl_provider.py); 12B (MBRIDGE)."""
    return _nemotron_nano(5120, "M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-",
                          20480)


def _gpt_oss(layers: int, experts: int) -> PretrainedConfig:
    from transformers import GptOssConfig

    layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    config = GptOssConfig(num_hidden_layers=layers, num_local_experts=experts,
                          vocab_size=201088, hidden_size=2880, intermediate_size=2880,
                          head_dim=64, num_attention_heads=64, num_key_value_heads=8,
                          sliding_window=128, layer_types=layer_types,
                          tie_word_embeddings=False, hidden_act="silu",
                          max_position_embeddings=131072, rms_norm_eps=1e-5,
                          num_experts_per_tok=4, swiglu_limit=7.0, attention_bias=True)
    return _served(_rope(config, 150_000.0, rope_type="yarn", factor=32.0, beta_fast=32.0,
                         beta_slow=1.0, original_max_position_embeddings=4096,
                         truncate=False))


def _gpt_oss_20b() -> PretrainedConfig:
    """openai/gpt-oss-20b: AIC (openai--gpt-oss-20b); total 20,914,757,184 (KERAS
    gpt_oss_20b_en); 3.6B active (OPENAI README)."""
    return _gpt_oss(layers=24, experts=32)


def _gpt_oss_120b() -> PretrainedConfig:
    """openai/gpt-oss-120b: AIC (openai--gpt-oss-120b), openai/gpt-oss gpt_oss/torch/model.py
    ModelConfig defaults; total 116,829,156,672 (KERAS gpt_oss_120b_en); 5.1B active (OPENAI)."""
    return _gpt_oss(layers=36, experts=128)


# --------------------------------------------------------------------------- the entries

def _exact(value: int, source: str) -> PublicCount:
    return PublicCount(float(value), 1.0, source)


def _rounded(billions: float, resolution_b: float, source: str,
             includes_vision: bool = False) -> PublicCount:
    return PublicCount(billions * 1e9, resolution_b * 1e9, source, includes_vision)


_QWEN_FP8 = r"^model\.layers\.\d+\.(self_attn\.[qkvo]_proj\.weight|mlp\.experts\.\w+)$"
_DEEPSEEK_FP8 = (r"^model\.layers\.\d+\.(self_attn\.\w+_proj\w*\.weight|mlp\.\w+_proj\.weight|"
                 r"mlp\.experts\.\w+|mlp\.shared_experts\.\w+_proj\.weight)$")
_LLAMA405_FP8 = r"^model\.layers\.(?!0\.|125\.)\d+\.mlp\.(gate|up|down)_proj\.weight$"
_MAVERICK_FP8 = r"^model\.layers\.(?!0\.|47\.)\d+\.feed_forward\.experts\.\w+$"
_GPT_OSS_MXFP4 = r"^model\.layers\.\d+\.mlp\.experts\.(gate_up_proj|down_proj)$"

_S_QWEN_FP8 = ("fp8: Qwen fine-grained fp8 (block 128), every linear layer of the decoder except "
               "the MoE router; embeddings, norms, lm_head bf16 (quantization_config "
               "modules_to_not_convert in AIC Qwen--Qwen3-235B-A22B-FP8)")
_S_DS_FP8 = ("fp8 e4m3, 128x128 blocks, linear weights of the decoder layers; router, embeddings "
             "and head bf16 (DSV3 README_WEIGHTS.md, AIC quantization_config)")
_S_META_FP8 = ("fp8 row-wise (fbgemm) on {what}, not on the first and last layers (META "
               "fp8_mixed scheme in models/{path}/quantization/loader.py)")

#: Hub id -> (config factory, facts); the measured checkpoints of ML.ENERGY v3's LLM tasks
_ENTRIES: dict[str, tuple[Callable[[], PretrainedConfig], ServingFacts]] = {}


def _add(name: str, factory: Callable[[], PretrainedConfig], facts: ServingFacts) -> None:
    _ENTRIES[name] = (factory, facts)


def _facts(architecture: str, total: PublicCount, active: PublicCount | None = None,
           weight_format: str = "bf16", quantized: str = "", sources: str = "",
           active_counts_embedding: bool = True) -> ServingFacts:
    return ServingFacts(architecture, weight_format, quantized, total, active,
                        active_counts_embedding, sources)


_Q8 = _exact(8_190_735_360, "KERAS qwen3_8b_en")
_add("Qwen/Qwen3-8B", _qwen3_8b, _facts("dense", _Q8))
_add("Qwen/Qwen3-14B", _qwen3_14b, _facts("dense", _exact(14_768_307_200, "KERAS qwen3_14b_en")))
_add("Qwen/Qwen3-32B", _qwen3_32b, _facts("dense", _exact(32_762_123_264, "KERAS qwen3_32b_en")))

_Q30 = (_exact(30_532_122_624, "KERAS qwen3_moe_30b_a3b_en"),
        _rounded(3.3, 0.1, "QWEN model card: 3.3B activated"))
for _name in ("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-30B-A3B-Thinking-2507",
              "Qwen/Qwen3-Coder-30B-A3B-Instruct"):
    _add(_name, _qwen3_30b_a3b, _facts("moe", *_Q30))

_Q235 = (_exact(235_093_634_560, "KERAS qwen3_moe_235b_a22b_en"),
         _rounded(22, 1, "QWEN README: 235B-A22B, 22B activated"))
for _name in ("Qwen/Qwen3-235B-A22B-Instruct-2507", "Qwen/Qwen3-235B-A22B-Thinking-2507"):
    _add(_name, _qwen3_235b_a22b, _facts("moe", *_Q235))
    _add(f"{_name}-FP8", _qwen3_235b_a22b,
         _facts("moe", *_Q235, weight_format="fp8", quantized=_QWEN_FP8, sources=_S_QWEN_FP8))

_Q480 = (_rounded(480, 1, "QWEN Qwen3-Coder README: 480B"),
         _rounded(35, 1, "QWEN Qwen3-Coder README: 35B active"))
_add("Qwen/Qwen3-Coder-480B-A35B-Instruct", _qwen3_coder_480b_a35b, _facts("moe", *_Q480))
_add("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8", _qwen3_coder_480b_a35b,
     _facts("moe", *_Q480, weight_format="fp8", quantized=_QWEN_FP8, sources=_S_QWEN_FP8))

# README_WEIGHTS.md gives 36.7B activated "including 0.9B for Embedding and 0.9B for the output
# Head"; counting the config's weights gives 37.55B (README.md: "37B activated"), 2.3 % more
_DS = (_rounded(671, 1, "DSV3 README_WEIGHTS.md: main model 671B"),
       _rounded(37, 1, "DSV3 README.md: 671B total, 37B activated for each token"))
for _name in ("deepseek-ai/DeepSeek-R1-0528", "deepseek-ai/DeepSeek-V3.1"):
    _add(_name, _deepseek_v3, _facts("moe", *_DS, weight_format="fp8", quantized=_DEEPSEEK_FP8,
                                     sources=_S_DS_FP8))

_add("google/gemma-3-12b-it", _gemma3_12b,
     _facts("dense", _exact(11_765_788_416, "KERAS gemma3_instruct_12b_text")))
_add("google/gemma-3-27b-it", _gemma3_27b,
     _facts("dense", _exact(27_009_002_240, "KERAS gemma3_instruct_27b_text")))

_add("meta-llama/Llama-3.1-8B-Instruct", _llama31_8b,
     _facts("dense", _exact(8_030_261_248, "KERAS llama3_8b_en")))
_L70 = _rounded(70, 1, "META llama3_1/llama3_3 MODEL_CARD: 70B")
_add("meta-llama/Llama-3.1-70B-Instruct", _llama31_70b, _facts("dense", _L70))
_add("meta-llama/Llama-3.3-70B-Instruct", _llama31_70b, _facts("dense", _L70))
_L405 = _rounded(405, 1, "META llama3_1 MODEL_CARD: 405B")
_add("meta-llama/Llama-3.1-405B-Instruct", _llama31_405b, _facts("dense", _L405))
_add("meta-llama/Llama-3.1-405B-Instruct-FP8", _llama31_405b,
     _facts("dense", _L405, weight_format="fp8", quantized=_LLAMA405_FP8,
            sources=_S_META_FP8.format(what="the FFN weights", path="llama3")))

_add("meta-llama/Llama-4-Scout-17B-16E-Instruct", _llama4_scout,
     _facts("moe", _rounded(109, 1, "META llama4 MODEL_CARD: 109B total (with the vision encoder)",
                     includes_vision=True),
            _rounded(17, 1, "META llama4 MODEL_CARD: 17B activated")))
_add("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8", _llama4_maverick,
     _facts("moe", _rounded(400, 1, "META llama4 MODEL_CARD: 400B total (with the vision encoder)",
                     includes_vision=True),
            _rounded(17, 1, "META llama4 MODEL_CARD: 17B activated"), weight_format="fp8",
            quantized=_MAVERICK_FP8,
            sources=_S_META_FP8.format(what="the routed experts", path="llama4")))

_add("nvidia/NVIDIA-Nemotron-Nano-9B-v2", _nemotron_nano_9b_v2,
     _facts("hybrid", _rounded(9, 1, "MBRIDGE: Parameters 9B")))
_add("nvidia/NVIDIA-Nemotron-Nano-12B-v2", _nemotron_nano_12b_v2,
     _facts("hybrid", _rounded(12, 1, "MBRIDGE: Parameters 12B")))

_S_MXFP4 = ("mxfp4 on the MoE expert weights only; attention, router, embeddings, lm_head bf16 "
            "(quantization_config modules_to_not_convert in AIC openai--gpt-oss-*)")
_add("openai/gpt-oss-20b", _gpt_oss_20b,
     _facts("moe", _exact(20_914_757_184, "KERAS gpt_oss_20b_en"),
            _rounded(3.6, 0.1, "OPENAI README: 3.6B active"), weight_format="mxfp4",
            quantized=_GPT_OSS_MXFP4, sources=_S_MXFP4, active_counts_embedding=False))
_add("openai/gpt-oss-120b", _gpt_oss_120b,
     _facts("moe", _exact(116_829_156_672, "KERAS gpt_oss_120b_en"),
            _rounded(5.1, 0.1, "OPENAI README: 5.1B active"), weight_format="mxfp4",
            quantized=_GPT_OSS_MXFP4, sources=_S_MXFP4, active_counts_embedding=False))

#: Hub id -> factory of its ``transformers`` config (merged into the registry's BUILTIN_MODELS)
SERVING_MODELS: dict[str, Callable[[], PretrainedConfig]] = {
    name: factory for name, (factory, _) in _ENTRIES.items()}

#: Hub id -> public facts (weight format as served, published parameter counts, sources)
SERVING_FACTS: dict[str, ServingFacts] = {name: facts for name, (_, facts) in _ENTRIES.items()}

#: short names -> Hub id (merged into the registry's ALIASES)
SERVING_ALIASES: dict[str, str] = {
    "qwen3-8b": "Qwen/Qwen3-8B",
    "qwen3-14b": "Qwen/Qwen3-14B",
    "qwen3-32b": "Qwen/Qwen3-32B",
    "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B-Instruct-2507",
    "Qwen/Qwen3-30B-A3B": "Qwen/Qwen3-30B-A3B-Instruct-2507",
    "qwen3-coder-30b-a3b": "Qwen/Qwen3-Coder-30B-A3B-Instruct",
    "qwen3-235b-a22b": "Qwen/Qwen3-235B-A22B-Instruct-2507",
    "Qwen/Qwen3-235B-A22B": "Qwen/Qwen3-235B-A22B-Instruct-2507",
    "qwen3-235b-a22b-fp8": "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8",
    "Qwen/Qwen3-235B-A22B-FP8": "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8",
    "qwen3-coder-480b-a35b": "Qwen/Qwen3-Coder-480B-A35B-Instruct",
    "qwen3-coder-480b-a35b-fp8": "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
    "deepseek-v3": "deepseek-ai/DeepSeek-V3.1",
    "deepseek-ai/DeepSeek-V3": "deepseek-ai/DeepSeek-V3.1",
    "deepseek-v3.1": "deepseek-ai/DeepSeek-V3.1",
    "deepseek-r1": "deepseek-ai/DeepSeek-R1-0528",
    "deepseek-ai/DeepSeek-R1": "deepseek-ai/DeepSeek-R1-0528",
    "gemma-3-12b": "google/gemma-3-12b-it",
    "gemma-3-27b": "google/gemma-3-27b-it",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-8B": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.1-70b": "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-3.1-70B": "meta-llama/Llama-3.1-70B-Instruct",
    "llama-3.3-70b": "meta-llama/Llama-3.3-70B-Instruct",
    "llama-3.1-405b": "meta-llama/Llama-3.1-405B-Instruct",
    "meta-llama/Llama-3.1-405B": "meta-llama/Llama-3.1-405B-Instruct",
    "llama-3.1-405b-fp8": "meta-llama/Llama-3.1-405B-Instruct-FP8",
    "llama-4-scout": "meta-llama/Llama-4-Scout-17B-16E-Instruct",
    "llama-4-maverick": "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
    "nemotron-nano-9b-v2": "nvidia/NVIDIA-Nemotron-Nano-9B-v2",
    "nemotron-nano-12b-v2": "nvidia/NVIDIA-Nemotron-Nano-12B-v2",
    "gpt-oss-20b": "openai/gpt-oss-20b",
    "gpt-oss-120b": "openai/gpt-oss-120b",
}

#: names of the routed-expert weights (one tensor holds all experts of a layer); shared experts
#: (``shared_experts``/``shared_expert``) are dense
ROUTED_EXPERT_PARAM = re.compile(r"\.experts\.")


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters of a ``...ForCausalLM`` model: ``total``, those of the routed experts, and the
    ones used per token (``active``: all but the unselected routed experts)."""

    total: int
    routed_experts: int
    active: int
    embedding: int


def count_parameters(config: PretrainedConfig) -> ParameterCounts:
    """Count the causal-LM parameters of ``config`` on the meta device (no memory used).

    ``active`` counts, per MoE layer, ``num_experts_per_tok / num_experts`` of the routed experts
    (every other weight, including the output head and the input embedding, counts fully).
    """
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = routed = embedding = 0
    for name, param in model.named_parameters():
        total += param.numel()
        if ROUTED_EXPERT_PARAM.search(name):
            routed += param.numel()
    embedding = model.get_input_embeddings().weight.numel()
    experts = _num_routed_experts(config)
    active = total if not routed else total - routed + routed * _experts_per_token(config) \
        // experts
    return ParameterCounts(total=total, routed_experts=routed, active=active, embedding=embedding)


def _num_routed_experts(config: PretrainedConfig) -> int:
    for attr in ("num_experts", "num_local_experts", "n_routed_experts"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1


def _experts_per_token(config: PretrainedConfig) -> int:
    value = getattr(config, "num_experts_per_tok", None)
    return value if isinstance(value, int) and value > 0 else 1
