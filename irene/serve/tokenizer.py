"""The tokenizer a served model uses, built without any download.

A local model directory with a ``tokenizer.json`` brings its own (read with the ``tokenizers``
library). Otherwise (a built-in model with random weights: no real tokenizer may be fetched) a
byte-level BPE is trained at start-up on the shipped HumanEval prompts: deterministic, about 4
characters per token on code like GPT-2's, with ``min(vocab_size, 8192)`` entries (the model's
other ids are never generated: decoding takes the argmax over the tokenizer's ids only). Its
token counts resemble a code model's; its text is not the real model's tokenisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: the largest vocabulary trained on the HumanEval prompts (more merges than the corpus holds
#: would be meaningless)
MAX_TRAINED_VOCAB = 8192


def train_code_tokenizer(vocab_size: int) -> Any:
    """A byte-level BPE (``tokenizers.Tokenizer``) trained on the HumanEval prompts with at most
    ``vocab_size`` entries (>= 257: the byte alphabet and one merge)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from irene.serve.prompts import read_prompts

    size = max(257, min(vocab_size, MAX_TRAINED_VOCAB))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([p.text for p in read_prompts()], trainer=trainer)
    return tokenizer


def load_tokenizer(model: str, vocab_size: int) -> tuple[Any, str]:
    """The tokenizer for ``model`` and a line saying where it comes from."""
    path = Path(model).expanduser()
    local = path / "tokenizer.json" if path.is_dir() else None
    if local is not None and local.is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(local)), f"tokenizer from {local}"
    tokenizer = train_code_tokenizer(vocab_size)
    return tokenizer, (f"byte-level BPE of {tokenizer.get_vocab_size()} tokens trained on the "
                       "HumanEval prompts (the model's own tokenizer is not downloaded)")
