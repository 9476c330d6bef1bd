"""The tiny transformer configurations every test builds models from (random weights, no
download): hidden size 32, 2 layers, 4 heads, MLP width 64, vocabulary 100, 64 positions.

``*_config(**overrides)`` returns the configuration (a keyword overrides or adds a field:
``bert_config(num_hidden_layers=1)``); :func:`tiny_model` builds the base model in eval mode.
"""

from __future__ import annotations

from typing import Any

import transformers as T

#: the shared sizes (tests that compute expected FLOPs by hand read them from here)
VOCAB, HIDDEN, LAYERS, HEADS, INTER, POSITIONS = 100, 32, 2, 4, 64, 64


def bert_config(**overrides: Any) -> T.BertConfig:
    return T.BertConfig(**{"vocab_size": VOCAB, "hidden_size": HIDDEN,
                           "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                           "intermediate_size": INTER, "max_position_embeddings": POSITIONS,
                           **overrides})


def roberta_config(**overrides: Any) -> T.RobertaConfig:
    return T.RobertaConfig(**{"vocab_size": VOCAB, "hidden_size": HIDDEN,
                              "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                              "intermediate_size": INTER,
                              "max_position_embeddings": POSITIONS + 2, "pad_token_id": 1,
                              **overrides})


def distilbert_config(**overrides: Any) -> T.DistilBertConfig:
    return T.DistilBertConfig(**{"vocab_size": VOCAB, "dim": HIDDEN, "n_layers": LAYERS,
                                 "n_heads": HEADS, "hidden_dim": INTER,
                                 "max_position_embeddings": POSITIONS, **overrides})


def gpt2_config(**overrides: Any) -> T.GPT2Config:
    return T.GPT2Config(**{"vocab_size": VOCAB, "n_embd": HIDDEN, "n_layer": LAYERS,
                           "n_head": HEADS, "n_positions": POSITIONS, "bos_token_id": None,
                           "eos_token_id": None, **overrides})


def openai_gpt_config(**overrides: Any) -> T.OpenAIGPTConfig:
    return T.OpenAIGPTConfig(**{"vocab_size": VOCAB, "n_embd": HIDDEN, "n_layer": LAYERS,
                                "n_head": HEADS, "n_positions": POSITIONS, **overrides})


def llama_config(**overrides: Any) -> T.LlamaConfig:
    return T.LlamaConfig(**{"vocab_size": VOCAB, "hidden_size": HIDDEN,
                            "intermediate_size": INTER, "num_hidden_layers": LAYERS,
                            "num_attention_heads": HEADS, "num_key_value_heads": 2,
                            "max_position_embeddings": POSITIONS, **overrides})


def neox_config(**overrides: Any) -> T.GPTNeoXConfig:
    return T.GPTNeoXConfig(**{"vocab_size": VOCAB, "hidden_size": HIDDEN,
                              "intermediate_size": INTER, "num_hidden_layers": LAYERS,
                              "num_attention_heads": HEADS, "max_position_embeddings": POSITIONS,
                              "rotary_pct": 0.25, "bos_token_id": 0, "eos_token_id": 0,
                              **overrides})


def phi_config(**overrides: Any) -> T.PhiConfig:
    return T.PhiConfig(**{"vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": INTER,
                          "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
                          "num_key_value_heads": HEADS, "max_position_embeddings": POSITIONS,
                          "partial_rotary_factor": 0.5, "bos_token_id": 0, "eos_token_id": 0,
                          **overrides})


CONFIGS = {"bert": bert_config, "roberta": roberta_config, "distilbert": distilbert_config,
           "gpt2": gpt2_config, "openai-gpt": openai_gpt_config, "llama": llama_config,
           "neox": neox_config, "phi": phi_config}


def tiny_model(kind: str, attn: str | None = None, **overrides: Any) -> T.PreTrainedModel:
    """The base model (``AutoModel``) of ``CONFIGS[kind]`` with random weights, in eval mode;
    ``attn``: the attention implementation (None: transformers' default)."""
    extra = {} if attn is None else {"attn_implementation": attn}
    return T.AutoModel.from_config(CONFIGS[kind](**overrides), **extra).eval()


#: the smallest BERT config.json the hardening tests hand to commands (a dict)
TINY_BERT_CONFIG = {"model_type": "bert", "vocab_size": 64, "hidden_size": 16,
                    "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                    "max_position_embeddings": 32, "type_vocab_size": 2}
