"""One family for every model id of the public measurements (the unit of held-out evaluation).

A *family* groups checkpoints that share an architecture lineage: fine-tunes, quantised twins,
Instruct/Thinking variants and same-maker siblings of one base. Family-out evaluation holds out a
whole family per fold, never a single checkpoint, so near-duplicates cannot stay in training.

``HELD_OUT`` names the independent check of issue 21: the google/gemma-2 and microsoft/Phi-3
families of ML.ENERGY v2 and every V100 row of v1 are never extracted, fitted or used for a
choice. ``is_held_out`` is the one test of it; extract scripts call it on the path *before*
reading a file.
"""

from __future__ import annotations

import re

#: (pattern on the lower-cased model id, family), first match wins
_RULES: tuple[tuple[str, str], ...] = (
    (r"^(meta-llama|codellama|metaai)/", "Llama"),
    # LLaMA-1 fine-tunes and re-trainings of the LLaMA architecture (ML.ENERGY v1)
    (r"^(lmsys/vicuna|tatsu-lab/alpaca|bair/koala|camel-ai/camel|neutralzz/billa"
     r"|nomic-ai/gpt4all|openaccess-ai-collective/manticore|project-baize/"
     r"|h2oai/h2ogpt-.*open-llama)", "Llama"),
    (r"^qwen/", "Qwen"),
    (r"^openai/gpt-oss", "gpt-oss"),
    (r"^deepseek-ai/", "DeepSeek"),
    (r"^mistralai/", "Mistral"),  # Mistral and Mixtral
    (r"^google/(code)?gemma", "Gemma"),
    (r"^microsoft/phi", "Phi"),
    (r"^nvidia/.*nemotron", "Nemotron"),
    (r"^bigcode/starcoder", "StarCoder"),
    # the GPT-NeoX architecture: Pythia and its fine-tunes, StableLM-alpha, RedPajama-INCITE
    (r"^(databricks/dolly|openassistant/.*pythia|eleutherai/|stabilityai/stablelm-tuned-alpha"
     r"|togethercomputer/redpajama)", "GPT-NeoX"),
    (r"^(freedomintelligence/phoenix|bigscience/bloom)", "BLOOM"),
    (r"^(lmsys/fastchat-t5|google/(flan-)?t5)", "T5"),
    (r"^blinkdl/rwkv", "RWKV"),
)
_COMPILED = tuple((re.compile(pattern), family) for pattern, family in _RULES)

#: the independent check (issue 21): model-id prefixes (lower case) of ML.ENERGY v2, and v1's GPU
HELD_OUT_V2_PREFIXES: tuple[str, ...] = ("google/gemma-2", "microsoft/phi-3")
HELD_OUT_V1_GPUS: tuple[str, ...] = ("V100",)


class UnknownFamily(KeyError):
    """A model id no rule covers: add a rule here rather than guessing elsewhere."""


def family(model_id: str) -> str:
    """The family of a Hugging Face-style model id (``org/name``); raises ``UnknownFamily``."""
    key = model_id.strip().lower()
    for pattern, name in _COMPILED:
        if pattern.search(key):
            return name
    raise UnknownFamily(f"no family rule for model id {model_id!r} (irene/hardware/families.py)")


def is_held_out(model_id: str | None = None, gpu: str | None = None) -> bool:
    """Whether a v2 model id or a v1 GPU belongs to the independent check (never read)."""
    if model_id is not None and model_id.strip().lower().startswith(HELD_OUT_V2_PREFIXES):
        return True
    return gpu is not None and gpu.strip().upper() in HELD_OUT_V1_GPUS
