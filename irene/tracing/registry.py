"""Which models the tracer can build, and building them with random weights (no download).

A model is named by one of:

* a **built-in** name (:data:`BUILTIN_MODELS`): a ``transformers`` config with the exact public
  hyper-parameters of that checkpoint, built with random weights — energy and time do not depend
  on the weight values, so nothing is downloaded;
* a **local path**: a directory holding ``config.json`` or the path of a ``config.json`` (the
  architecture is read from it; weights, if any, are not loaded);
* a **Hub name** (``owner/model``), only when ``hub=True`` and the machine is online: only the
  configuration file is fetched, never weights.

The base model class (``AutoModel``: e.g. ``BertModel``, ``GPT2Model``, no task head) is built,
as in IrEne's data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irene.checks import InputError
from irene.schema import ATTN_IMPLEMENTATIONS, DTYPES
from irene.tracing.serving_models import SERVING_ALIASES, SERVING_MODELS

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel



class UnknownModelError(InputError):
    """A model name that is neither built in, nor a local config, nor reachable on the Hub."""


class ConfigError(UnknownModelError):
    """A model config that is incomplete, of the wrong types, impossible or beyond the bounds of
    :mod:`irene.limits`; the message names the file (or model) and the field."""


#: the sizes a local ``config.json`` must declare itself when its config class has a default for
#: them (canonical transformers names; the file may use the class's own name, e.g. GPT-2's
#: ``n_embd``): a missing size is refused, never filled in from the class's defaults
REQUIRED_SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size")
#: size fields checked on every config (canonical name -> the bound of irene.limits it obeys);
#: the routed-expert counts may be 0 (a dense model)
_SIZE_LIMITS = {"num_hidden_layers": "MAX_LAYERS", "hidden_size": "MAX_WIDTH",
                "intermediate_size": "MAX_WIDTH", "num_attention_heads": "MAX_WIDTH",
                "num_key_value_heads": "MAX_WIDTH", "head_dim": "MAX_WIDTH",
                "moe_intermediate_size": "MAX_WIDTH", "vocab_size": "MAX_VOCAB"}
_EXPERT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts")
_TOP_K_FIELDS = ("num_experts_per_tok", "moe_topk")


def _bert_base_uncased() -> PretrainedConfig:
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                      num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                      max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                      pad_token_id=0)


def _distilbert_base_uncased() -> PretrainedConfig:
    from transformers import DistilBertConfig

    return DistilBertConfig(vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
                            activation="gelu", max_position_embeddings=512,
                            sinusoidal_pos_embds=False, pad_token_id=0)


def _roberta_base() -> PretrainedConfig:
    from transformers import RobertaConfig

    return RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                         max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                         pad_token_id=1, bos_token_id=0, eos_token_id=2)


def _gpt2(n_layer: int = 12, vocab_size: int = 50257,
          special_token_id: int | None = 50256) -> PretrainedConfig:
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab_size, n_positions=1024, n_embd=768, n_layer=n_layer,
                      n_head=12, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                      bos_token_id=special_token_id, eos_token_id=special_token_id)


def _distilgpt2() -> PretrainedConfig:
    return _gpt2(n_layer=6)


def _codeparrot_small() -> PretrainedConfig:
    # special token ids do not change the computation; left unset
    return _gpt2(vocab_size=32768, special_token_id=None)


def _openai_gpt() -> PretrainedConfig:
    from transformers import OpenAIGPTConfig

    return OpenAIGPTConfig(vocab_size=40478, n_positions=512, n_embd=768, n_layer=12, n_head=12,
                           afn="gelu", layer_norm_epsilon=1e-5)


def _pythia_410m() -> PretrainedConfig:
    from transformers import GPTNeoXConfig

    config = GPTNeoXConfig(vocab_size=50304, hidden_size=1024, num_hidden_layers=24,
                           num_attention_heads=16, intermediate_size=4096, hidden_act="gelu",
                           max_position_embeddings=2048, layer_norm_eps=1e-5,
                           use_parallel_residual=True, tie_word_embeddings=False,
                           bos_token_id=0, eos_token_id=0)
    _set_rope(config, theta=10000.0, partial=0.25)
    return config


def _tinyllama_1_1b() -> PretrainedConfig:
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                         num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                         hidden_act="silu", max_position_embeddings=2048, rms_norm_eps=1e-5,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    _set_rope(config, theta=10000.0)
    return config


def _phi_2() -> PretrainedConfig:
    from transformers import PhiConfig

    config = PhiConfig(vocab_size=51200, hidden_size=2560, intermediate_size=10240,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                       hidden_act="gelu_new", max_position_embeddings=2048, layer_norm_eps=1e-5,
                       resid_pdrop=0.1, embd_pdrop=0.0, attention_dropout=0.0,
                       qk_layernorm=False, tie_word_embeddings=False,
                       bos_token_id=50256, eos_token_id=50256)
    _set_rope(config, theta=10000.0, partial=0.4)
    return config


def _set_rope(config: PretrainedConfig, *, theta: float, partial: float | None = None) -> None:
    """Set rotary settings in both the transformers>=5 (``rope_parameters``) and older layouts."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    params.update({"rope_type": "default", "rope_theta": theta})
    if partial is not None:
        params["partial_rotary_factor"] = partial
    if hasattr(config, "rope_parameters"):
        config.rope_parameters = params
    else:  # transformers 4.x
        config.rope_theta = theta
        if partial is not None:
            config.partial_rotary_factor = partial
            if config.model_type == "gpt_neox":
                config.rotary_pct = partial


#: built-in architectures: public Hub name -> factory of its ``transformers`` config
BUILTIN_MODELS: dict[str, Callable[[], PretrainedConfig]] = {
    "bert-base-uncased": _bert_base_uncased,
    "distilbert-base-uncased": _distilbert_base_uncased,
    "roberta-base": _roberta_base,
    "gpt2": _gpt2,
    "distilgpt2": _distilgpt2,
    "openai-gpt": _openai_gpt,
    "EleutherAI/pythia-410m": _pythia_410m,
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": _tinyllama_1_1b,
    "microsoft/phi-2": _phi_2,
    "codeparrot/codeparrot-small": _codeparrot_small,
}

#: other names accepted for a built-in (same architecture); the tree keeps the name as given
ALIASES: dict[str, str] = {
    "pythia-410m": "EleutherAI/pythia-410m",
    "TinyLlama/TinyLlama-1.1B": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "TinyLlama-1.1B": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "tinyllama-1.1b": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "phi-2": "microsoft/phi-2",
    "codeparrot-small": "codeparrot/codeparrot-small",
    "openai-community/gpt2": "gpt2",
    "distilbert/distilgpt2": "distilgpt2",
    "openai-community/openai-gpt": "openai-gpt",
    "google-bert/bert-base-uncased": "bert-base-uncased",
    "distilbert/distilbert-base-uncased": "distilbert-base-uncased",
    "FacebookAI/roberta-base": "roberta-base",
}

# the LLMs measured by the ML.ENERGY Benchmark v3 (vLLM serving), written from public facts
BUILTIN_MODELS.update(SERVING_MODELS)
ALIASES.update(SERVING_ALIASES)


def list_models() -> list[str]:
    """Names of the built-in architectures, in registry order."""
    return list(BUILTIN_MODELS)


def builtin_name(name: str) -> str | None:
    if name in BUILTIN_MODELS:
        return name
    if name in ALIASES:
        return ALIASES[name]
    lowered = {k.lower(): k for k in [*BUILTIN_MODELS, *ALIASES]}
    hit = lowered.get(name.lower())
    return None if hit is None else ALIASES.get(hit, hit)


def _unknown(name: str, why: str) -> UnknownModelError:
    return UnknownModelError(
        f"unknown model {name!r} ({why}); built-in models: {', '.join(list_models())}; "
        "or give a local directory holding config.json, or a config.json path")


def load_config(name_or_path: str, *, hub: bool = True) -> PretrainedConfig:
    """The ``transformers`` config for a built-in name, a local path, or (``hub``) a Hub name.

    Raises :class:`UnknownModelError` listing the built-in names when nothing matches.
    """
    config = _find_config(name_or_path, hub=hub)
    path = Path(name_or_path).expanduser()
    where = str(path / "config.json") if builtin_name(name_or_path) is None and path.is_dir() \
        else name_or_path
    check_config(config, where)
    return config


def config_source(name_or_path: str) -> tuple[str, str]:
    """Where the config of ``name_or_path`` comes from, in the order :func:`load_config` looks:
    ``("builtin", canonical name)``, ``("local", path as given, ~ expanded)`` or ``("hub",
    name)``. Reads nothing but the file system's listing."""
    builtin = builtin_name(name_or_path)
    if builtin is not None:
        return "builtin", builtin
    path = Path(name_or_path).expanduser()
    if path.exists():
        return "local", str(path)
    return "hub", name_or_path


def _find_config(name_or_path: str, *, hub: bool) -> PretrainedConfig:
    kind, where = config_source(name_or_path)
    if kind == "builtin":
        return BUILTIN_MODELS[where]()
    if kind == "local":
        return _local_config(Path(where))
    if not hub:
        return _raise(_unknown(name_or_path, "not built in, no such local path, Hub lookup off"))
    reason = hub_unreachable()
    if reason:
        raise _unknown(name_or_path, f"not built in, no such local path, and {reason}")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
    except Exception as exc:  # network errors, and validation errors with no common base
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _unknown(name_or_path, f"not built in, no such local path, Hub: {first}") from exc


def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face Hub cannot be asked (offline mode, or no connection within
    ``timeout_s`` seconds), or None when it can: fails fast instead of spending half a minute
    on retries."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        return f"the Hub ({host}) cannot be reached: {exc.strerror or exc} (offline?)"
    return None


def _raise(exc: Exception) -> Any:
    raise exc


def local_config_file(path: Path) -> Path:
    """The config file of a local model: ``path/config.json`` for a directory, else ``path``."""
    return path / "config.json" if path.is_dir() else path


def _local_config(path: Path) -> PretrainedConfig:
    """The config of a local directory or ``config.json``, read as untrusted input: the file is
    bounded (size, nesting, digits), must declare every size itself (:data:`REQUIRED_SIZES`)
    and transformers' own validation errors become one :class:`ConfigError` line."""
    from transformers import AutoConfig

    from irene.files import loads_json, read_small_text

    config_file = local_config_file(path)
    if not config_file.is_file():
        raise UnknownModelError(f"{path}: no config.json in this directory")
    try:
        raw = loads_json(read_small_text(config_file))
    except OSError as exc:
        raise ConfigError(f"{config_file}: cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:  # malformed JSON, too deep, too large, not UTF-8
        raise ConfigError(f"{config_file}: not a usable transformers config: "
                          f"{_one_line(exc)}") from exc
    check_config_fields(raw, str(config_file))
    try:
        return AutoConfig.from_pretrained(str(config_file), trust_remote_code=False,
                                          local_files_only=True)
    except Exception as exc:  # transformers' validation errors have no common base class
        raise ConfigError(f"{config_file}: not a usable transformers config: "
                          f"{_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def check_config_object(raw: Any, where: str) -> str:
    """The model type of a parsed ``config.json`` ``raw``; ConfigError naming ``where`` and the
    field unless it is an object naming its model type, with finite numbers and an object as
    ``quantization_config``. Needs neither torch nor transformers."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a config must be a JSON object, got {type(raw).__name__}")
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ConfigError(f"{where}: field 'model_type' missing or not a string")
    for key, value in raw.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: field {key!r} must be a finite number, got {value!r} "
                              "(or an integer of hundreds of digits)")
    quant = raw.get("quantization_config")
    if quant is not None and not isinstance(quant, dict):
        raise ConfigError(f"{where}: field 'quantization_config' must be an object, got "
                          f"{type(quant).__name__} {str(quant)[:40]!r}")
    return model_type


def check_config_fields(raw: Any, where: str) -> None:
    """ConfigError naming ``where`` and the field unless the parsed ``config.json`` ``raw``
    passes :func:`check_config_object` and declares every size of :data:`REQUIRED_SIZES` its
    config class has (in ``text_config`` too, when that names a model type)."""
    from transformers import CONFIG_MAPPING

    model_type = check_config_object(raw, where)
    if model_type not in CONFIG_MAPPING:
        return  # transformers refuses it, with its own message
    cls = CONFIG_MAPPING[model_type]
    try:
        defaults = cls()
    except Exception:  # a composite class without defaults: its parts are checked below
        defaults = None
    aliases = getattr(cls, "attribute_map", {}) or {}
    for name in REQUIRED_SIZES if defaults is not None else ():
        if getattr(defaults, name, None) is None:
            continue  # the class has no such size (GPT-2's feed-forward is 4 x hidden)
        names = [name] + [k for k, v in aliases.items() if v == name] + \
            ([aliases[name]] if name in aliases else [])
        if not any(n in raw for n in names):
            raise ConfigError(f"{where}: field {names[-1]!r} missing: every size of the model "
                              "must be given (no default is assumed)")
    inner = raw.get("text_config")
    if isinstance(inner, dict) and isinstance(inner.get("model_type"), str):
        check_config_fields(inner, f"{where}: text_config")


def _text_part(config: Any) -> Any:
    inner = getattr(config, "text_config", None)
    return inner if inner is not None and hasattr(inner, "num_hidden_layers") else config


def _field_name(config: Any, name: str) -> str:
    return (getattr(config, "attribute_map", {}) or {}).get(name, name)


def check_config(config: Any, where: str) -> None:
    """ConfigError naming ``where`` and the field unless ``config`` (a transformers config) is
    possible and within :mod:`irene.limits`: sizes positive integers under their bound, the
    attention heads dividing the hidden size (without an explicit ``head_dim``), key-value
    heads dividing the heads, experts per token at most the experts, a parameter count under
    :data:`~irene.limits.MAX_PARAMETERS`, ``quantization_config`` an object. Cheap: nothing is
    built."""
    from irene import limits

    c = _text_part(config)
    sizes: dict[str, int] = {}
    for name, bound in _SIZE_LIMITS.items():
        value = getattr(c, name, None)
        if value is None:
            continue
        limit = getattr(limits, bound)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ConfigError(f"{where}: field {_field_name(c, name)!r} must be an integer from "
                              f"1 to {limit}, got {value!r}")
        sizes[name] = value
    experts = _count(c, _EXPERT_FIELDS, where)
    top_k = _count(c, _TOP_K_FIELDS, where)
    hidden, heads = sizes.get("hidden_size"), sizes.get("num_attention_heads")
    if hidden and heads and "head_dim" not in sizes and hidden % heads:
        raise ConfigError(f"{where}: field {_field_name(c, 'num_attention_heads')!r}: "
                          f"{heads} attention heads do not divide the hidden size {hidden}")
    kv = sizes.get("num_key_value_heads")
    if kv and heads and heads % kv:
        raise ConfigError(f"{where}: field 'num_key_value_heads': {kv} key-value heads do not "
                          f"divide the {heads} attention heads")
    if experts and top_k > experts:
        raise ConfigError(f"{where}: field 'num_experts_per_tok': {top_k} experts per token "
                          f"but only {experts} experts")
    quant = getattr(config, "quantization_config", None)
    if quant is not None and not isinstance(quant, dict) and not hasattr(quant, "to_dict"):
        raise ConfigError(f"{where}: field 'quantization_config' must be an object, got "
                          f"{type(quant).__name__}")
    params = approx_parameters(config)
    if params > limits.MAX_PARAMETERS:
        raise ConfigError(f"{where}: about {params:.3g} parameters, more than the "
                          f"{limits.MAX_PARAMETERS:.0e} irene accepts (check the sizes)")


def _count(config: Any, names: tuple[str, ...], where: str) -> int:
    """The first of ``names`` the config sets (an expert count: 0 to MAX_EXPERTS), else 0."""
    from irene.limits import MAX_EXPERTS

    for name in names:
        value = getattr(config, name, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EXPERTS:
            raise ConfigError(f"{where}: field {_field_name(config, name)!r} must be an integer "
                              f"from 0 to {MAX_EXPERTS}, got {value!r}")
        return value
    return 0


def check_weights_fit(config: Any, bytes_per_weight: float, where: str) -> None:
    """ConfigError unless the weights of ``config`` (about :func:`approx_parameters` x
    ``bytes_per_weight`` bytes) fit in this machine's memory: checked before a model is built
    with real weights (the meta device needs none)."""
    need = approx_parameters(config) * bytes_per_weight
    have = physical_memory()
    if have and need > have:
        raise ConfigError(f"{where}: its weights need about {need / 1e9:.3g} GB, more than this "
                          f"machine's {have / 1e9:.3g} GB of memory; trace features only "
                          "(--no-timing: the meta device, no weights) or a smaller model")


def check_call_size(config: Any, batch_size: int, seq_len: int, context_len: int = 0, *,
                    allocates: bool = True) -> None:
    """ValueError (one line naming the sizes) unless one call of ``batch_size`` sequences of
    ``seq_len`` new tokens after ``context_len`` cached ones is within :mod:`irene.limits`:
    each size at most MAX_DIMENSION, the tokens at most MAX_TOKENS_PER_CALL and, when the call
    ``allocates`` real tensors (not the meta device), its largest activation (tokens x width,
    or the attention scores batch x heads x seq x (seq + context)) at most
    MAX_ACTIVATION_ELEMENTS. Checked before any input is allocated."""
    from irene import limits

    for label, value, low in (("batch size", batch_size, 1), ("sequence length", seq_len, 1),
                              ("context length", context_len, 0)):
        if isinstance(value, bool) or not isinstance(value, int) \
                or not low <= value <= limits.MAX_DIMENSION:
            raise ValueError(f"{label} must be an integer from {low} to {limits.MAX_DIMENSION}, "
                             f"got {value!r}")
    tokens = batch_size * (seq_len + context_len)
    if tokens > limits.MAX_TOKENS_PER_CALL:
        raise ValueError(f"batch size {batch_size} x {seq_len + context_len} tokens = {tokens} "
                         f"tokens in one call, more than the {limits.MAX_TOKENS_PER_CALL} irene "
                         "traces")
    if not allocates:
        return
    c = _text_part(config)
    width = max(int(getattr(c, n, 0) or 0) for n in ("hidden_size", "intermediate_size"))
    heads = int(getattr(c, "num_attention_heads", 0) or 0)
    elements = max(batch_size * seq_len * max(width, 1),
                   batch_size * heads * seq_len * (seq_len + context_len))
    if elements > limits.MAX_ACTIVATION_ELEMENTS:
        raise ValueError(f"batch size {batch_size} x sequence length {seq_len}"
                         f"{f' (+ {context_len} cached)' if context_len else ''}: one activation "
                         f"would hold {elements:.3g} values, more than the "
                         f"{limits.MAX_ACTIVATION_ELEMENTS:.3g} irene allocates; use smaller "
                         "sizes, or trace features only (--no-timing)")


def physical_memory() -> int:
    """Bytes of physical memory of this machine (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def approx_parameters(config: Any) -> float:
    """About how many parameters ``config`` declares (embeddings, attention and feed-forward
    or routed experts of every layer), from its sizes alone — an upper-bound check before
    anything is built, not the exact count (:func:`parameter_count`)."""
    c = _text_part(config)

    def size(*names: str, default: int = 0) -> int:
        for name in names:
            value = getattr(c, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return default

    hidden = size("hidden_size", default=1)
    heads = size("num_attention_heads", default=1)
    head_dim = size("head_dim", default=max(1, hidden // heads))
    kv_heads = size("num_key_value_heads", default=heads)
    ffn = size("moe_intermediate_size", "intermediate_size", "n_inner", default=4 * hidden)
    experts = max(1, size(*_EXPERT_FIELDS, default=1))
    attention = 2.0 * hidden * head_dim * (heads + kv_heads)
    per_layer = attention + 3.0 * hidden * ffn * experts
    return size("num_hidden_layers", default=1) * per_layer + 2.0 * size("vocab_size") * hidden


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float16"``/``"bfloat16"`` (or a torch dtype) as a ``torch.dtype``."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return getattr(torch, dtype)


def build_model(name_or_path: str | PretrainedConfig, *, attn: str = "eager",
                dtype: str | torch.dtype = "float32", device: str = "cpu", hub: bool = True,
                seed: int = 0) -> PreTrainedModel:
    """Build the base model (``AutoModel``) of ``name_or_path`` with random weights, in eval mode.

    ``attn``: ``"eager"`` (QKᵀ, softmax and ·V as separate primitives) or ``"sdpa"`` (one fused
    ``scaled_dot_product_attention``). The KV cache is switched off (one full forward pass).
    Weights are drawn with ``torch.manual_seed(seed)`` so two builds are identical.
    ``device="meta"``: built on the meta device — shapes without storage, no weights drawn
    (see :mod:`irene.tracing.meta`).
    """
    import torch
    from transformers import AutoModel

    if attn not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, got {attn!r}")
    where = str(name_or_path) if isinstance(name_or_path, (str, os.PathLike)) \
        else str(getattr(name_or_path, "name_or_path", "") or type(name_or_path).__name__)
    config = load_config(os.fspath(name_or_path), hub=hub) \
        if isinstance(name_or_path, (str, os.PathLike)) \
        else name_or_path
    check_config(config, where)
    if str(device) != "meta":
        check_weights_fit(config, torch.empty((), dtype=torch_dtype(dtype)).element_size(), where)
    config.use_cache = False
    if str(device) == "meta":
        with torch.device("meta"):
            model = AutoModel.from_config(config, attn_implementation=attn)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModel.from_config(config, attn_implementation=attn)
    model = model.to(device=device, dtype=torch_dtype(dtype))
    model.eval()
    if isinstance(name_or_path, (str, os.PathLike)):
        model.config.name_or_path = str(name_or_path)
    return model


def max_sequence_length(config: PretrainedConfig) -> int | None:
    """The longest sequence the model's position embeddings allow, or None if unbounded."""
    for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            if config.model_type in {"roberta", "xlm-roberta", "camembert"}:
                return value - (getattr(config, "pad_token_id", 1) or 1) - 1
            return value
    return None


def parameter_count(config: PretrainedConfig) -> int:
    """Parameters of the base model of ``config`` (built on the meta device: no memory used)."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return sum(p.numel() for p in model.parameters())


def lm_head_class(config: Any) -> type:
    """The transformers auto class with a language-model head for ``config``: masked LM for
    encoder families (BERT, RoBERTa, ...), causal LM for decoders — read from the config's
    ``architectures`` first, then its model type. ValueError when it has neither head."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    architectures = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return AutoModelForMaskedLM
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return AutoModelForCausalLM
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return AutoModelForMaskedLM
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return AutoModelForCausalLM
    raise ValueError(f"{config.model_type!r} has no masked- or causal-LM head in transformers")


def make_inputs(model: PreTrainedModel, batch_size: int, seq_len: int, *,
                seed: int = 0, context_len: int = 0) -> dict[str, Any]:
    """Random token ids (batch_size x seq_len) for the model, on its device (fixed seed);
    ValueError before anything is allocated when the call (with ``context_len`` cached tokens)
    is beyond :func:`check_call_size`."""
    import inspect

    import torch

    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch size and sequence length must be >= 1, got {batch_size}, "
                         f"{seq_len}")
    config = model.config
    device = next(model.parameters()).device
    check_call_size(config, batch_size, seq_len, context_len, allocates=device.type != "meta")
    limit = max_sequence_length(config)
    if limit is not None and seq_len + context_len > limit:
        cached = f" after {context_len} cached" if context_len else ""
        raise ValueError(f"sequence length {seq_len}{cached} exceeds the {limit} positions of "
                         f"{type(model).__name__}")
    vocab = int(getattr(config, "vocab_size", 0) or 2)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1 if vocab > 1 else 0, vocab, (batch_size, seq_len), generator=generator)
    inputs: dict[str, Any] = {"input_ids": ids.to(device)}
    if getattr(config, "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = inputs["input_ids"]
    if "use_cache" in inspect.signature(model.forward).parameters:
        inputs["use_cache"] = False  # no KV cache: replays must not grow a shared cache
    return inputs
