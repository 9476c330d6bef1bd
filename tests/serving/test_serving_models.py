"""The built-in architectures of the ML.ENERGY v3 LLMs: public sizes, weight formats, registry."""

from __future__ import annotations

import math
import re

import pytest
import torch

from irene.tracing.registry import ALIASES, BUILTIN_MODELS, load_config
from irene.tracing.serving_models import (
    FORMAT_BITS,
    SERVING_ALIASES,
    SERVING_FACTS,
    SERVING_MODELS,
    PublicCount,
    count_parameters,
)

#: one representative Hub id per distinct architecture factory
DISTINCT = sorted({factory.__name__: name for name, factory in SERVING_MODELS.items()}.values())


def agrees(count: int, public: PublicCount) -> bool:
    """Within 1 % of the published figure, or equal to it once rounded or truncated to the
    published digit; a figure that includes an unbuilt vision encoder must exceed the language
    model, by under 3 %."""
    if public.includes_vision:
        return 0.97 * public.value <= count <= public.value + public.resolution
    if abs(count - public.value) <= 0.01 * public.value:
        return True
    units = count / public.resolution
    return any(math.isclose(f(units) * public.resolution, public.value, rel_tol=1e-9)
               for f in (round, math.floor))


def test_agrees_rejects_counts_off_the_published_figure():
    exact = PublicCount(8.0e9, 1.0, "x")
    assert agrees(8_050_000_000, exact) and not agrees(8_100_000_000, exact)
    rounded = PublicCount(3.3e9, 1e8, "x")
    assert agrees(3_353_000_000, rounded)  # truncated to the published digit
    assert not agrees(3_420_000_000, rounded) and not agrees(3_240_000_000, rounded)
    vision = PublicCount(109e9, 1e9, "x", includes_vision=True)
    assert agrees(107_800_000_000, vision) and not agrees(100e9, vision)


@pytest.mark.parametrize("name", DISTINCT)
def test_config_builds_on_meta_with_the_public_parameter_count(name):
    facts = SERVING_FACTS[name]
    counts = count_parameters(load_config(name, hub=False))
    assert agrees(counts.total, facts.total), (counts.total, facts.total)
    if facts.total.resolution == 1.0:  # an exact published count: matched to 0.01 %
        assert counts.total == pytest.approx(facts.total.value, rel=1e-4)
    if facts.architecture == "moe":
        assert facts.active is not None and counts.routed_experts > 0
        active = counts.active - (0 if facts.active_counts_embedding else counts.embedding)
        assert agrees(active, facts.active), (active, facts.active)
    else:
        assert facts.active is None and counts.routed_experts == 0
        assert counts.active == counts.total


def test_every_entry_is_a_builtin_with_facts_and_its_aliases_resolve():
    assert set(SERVING_MODELS) == set(SERVING_FACTS)
    assert set(SERVING_MODELS) <= set(BUILTIN_MODELS)
    assert {a: ALIASES[a] for a in SERVING_ALIASES} == SERVING_ALIASES
    assert set(SERVING_ALIASES.values()) <= set(SERVING_MODELS)
    assert load_config("GPT-OSS-120B", hub=False).num_local_experts == 128
    assert load_config("llama-3.3-70b", hub=False).hidden_size == 8192
    assert {f.architecture for f in SERVING_FACTS.values()} == {"dense", "moe", "hybrid"}


@pytest.mark.parametrize("name", sorted(SERVING_MODELS))
def test_served_weight_format_names_real_weights(name):
    """A quantised checkpoint's pattern picks out large decoder weights, never the embedding or
    the output head; a bf16 checkpoint has no pattern."""
    facts = SERVING_FACTS[name]
    assert facts.weight_format in FORMAT_BITS
    if facts.weight_format == "bf16":
        assert facts.quantized == ""
        return
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(load_config(name, hub=False))
    pattern = re.compile(facts.quantized)
    total = sum(p.numel() for p in model.parameters())
    picked = {n: p.numel() for n, p in model.named_parameters() if pattern.search(n)}
    assert not any("embed" in n or n.startswith("lm_head") for n in picked)
    assert sum(picked.values()) > 0.5 * total  # the bulk of the weights is quantised


def test_configs_are_served_in_bf16_and_build_fresh_each_time():
    for factory in {f.__name__: f for f in SERVING_MODELS.values()}.values():
        first, second = factory(), factory()
        assert first is not second and first.dtype in ("bfloat16", torch.bfloat16)
