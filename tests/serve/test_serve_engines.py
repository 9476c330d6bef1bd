"""The serving engines' KV-cache greedy decoding (prefill, then one cached step per token)
against cache-less greedy decoding of the same PyTorch model (a full forward pass over the whole
sequence per token), for every runtime whose package is installed, on tiny random GPT-2-like
and Llama-like decoders (learned vs rotary positions, multi-head vs grouped-query attention)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from support.models import bert_config, gpt2_config, llama_config
from transformers import BertForMaskedLM

from irene.bench.run import load_model
from irene.bench.variants import CachedDecoder, VariantUnavailable
from irene.serve.engines import Engine, load_engine

#: prompts of one token (a one-position cache), shorter and longer than the traced sample (16)
PROMPTS = ([7], [5, 9, 77], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4],
           list(range(40, 80)))
NEW_TOKENS = 6
#: what each runtime needs installed, and how to install it
PACKAGES = {"onnxruntime": (("onnxruntime", "onnx", "onnxscript"), "pip install -e '.[onnx]'"),
            "openvino": (("openvino",), "pip install -e '.[openvino]'")}
RUNTIMES = ["torch", "torchscript", pytest.param("onnxruntime", marks=pytest.mark.slow),
            pytest.param("openvino", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model_dir(request, tmp_path_factory):
    config = {"gpt2": gpt2_config, "llama": llama_config}[request.param]()
    directory = tmp_path_factory.mktemp(f"tiny-{request.param}")
    config.save_pretrained(directory)
    return directory


def skip_unless_installed(runtime: str) -> None:
    modules, hint = PACKAGES.get(runtime, ((), ""))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed ({hint})")


def cacheless_logits(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    """The last position's logits of one forward pass over ``ids`` without a cache."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].numpy()


def cacheless_greedy(model: torch.nn.Module, ids: list[int], count: int) -> list[int]:
    out: list[int] = []
    for _ in range(count):
        out.append(int(np.argmax(cacheless_logits(model, ids + out))))
    return out


def stepwise_logits(engine: Engine, ids: list[int], tokens: list[int]) -> list[np.ndarray]:
    """The engine's logits after the prompt and after each of ``tokens`` fed through the cache."""
    logits, kv = engine.prefill(np.asarray([ids], dtype=np.int64))
    seen = [logits]
    for token in tokens:
        logits, kv = engine.step(np.asarray([[token]], dtype=np.int64), kv)
        seen.append(logits)
    return seen


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cached_greedy_decoding_equals_cacheless_torch(model_dir, runtime):
    skip_unless_installed(runtime)
    reference, _ = load_model(str(model_dir))  # the engine's weights: same seed
    engine = load_engine(str(model_dir), runtime)
    try:
        for ids in PROMPTS:
            expected = cacheless_greedy(reference, ids, NEW_TOKENS)
            assert engine.generate(ids, NEW_TOKENS) == expected, (runtime, ids)
            # every step's logits, not only their argmax: positions and cache are right at
            # every cache length
            for done, logits in enumerate(stepwise_logits(engine, ids, expected[:-1])):
                np.testing.assert_allclose(logits, cacheless_logits(reference,
                                                                    ids + expected[:done]),
                                           atol=1e-4, rtol=1e-4)
    finally:
        if engine.cleanup:
            engine.cleanup()


def test_a_model_without_a_decoder_cache_is_refused_with_the_reason():
    with pytest.raises(VariantUnavailable, match="decoder-only"):
        CachedDecoder(BertForMaskedLM(bert_config()).eval())
