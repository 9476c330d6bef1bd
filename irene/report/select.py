"""Choosing one tree out of a file: by index or by model / batch size / sequence length."""

from __future__ import annotations

from collections.abc import Sequence

from irene.tree import Tree


def select_tree(trees: Sequence[Tree], *, index: int | None = None, model: str | None = None,
                batch_size: int | None = None, seq_len: int | None = None) -> Tree:
    """One tree out of a file: by 0-based ``index``, or by model/batch size/sequence length.

    With no criterion a file of one tree gives that tree. Raises ValueError listing what the file
    holds when the choice is ambiguous or matches nothing.
    """
    if not trees:
        raise ValueError("no trees to choose from")
    if index is not None:
        if any(v is not None for v in (model, batch_size, seq_len)):
            raise ValueError("choose a tree either by index or by model/batch size/seq len")
        if not -len(trees) <= index < len(trees):
            raise ValueError(f"tree index {index} out of range: the file holds {len(trees)} trees")
        return trees[index]
    matches = [t for t in trees
               if (model is None or t.model_name == model)
               and (batch_size is None or t.batch_size == batch_size)
               and (seq_len is None or t.seq_len == seq_len)]
    if len(matches) == 1:
        return matches[0]
    listing = "; ".join(f"[{i}] {t.label}" for i, t in enumerate(trees[:12]))
    if len(trees) > 12:
        listing += f"; ... ({len(trees)} trees)"
    if not matches:
        raise ValueError(f"no tree matches the choice; the file holds: {listing}")
    raise ValueError(f"{len(matches)} trees match; choose one with --tree INDEX or "
                     f"--model/--batch-size/--seq-len. The file holds: {listing}")
