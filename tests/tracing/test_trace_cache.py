"""The trace cache of ``irene estimate MODEL --gpu``: the same call again is served from disk
with the same numbers; any change of what the trace depends on is a miss; a damaged entry is
reported and traced again; nothing but meta traces of keyable models is kept."""

from __future__ import annotations

import gc
import gzip
import json

import pytest

import irene.estimate
from irene.cli import main
from irene.cli.estimate_gpu import paused_gc
from irene.estimate_gpu import estimate_on_gpu
from irene.tracing import tree_cache
from irene.tracing.tree_cache import (
    CACHE_ENV,
    default_cache_dir,
    entry_path,
    load_tree,
    prune,
    request_key,
    store_tree,
)

TINY_BERT = {"model_type": "bert", "vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
             "type_vocab_size": 2}
CALL = {"phase": "forward", "context_len": 0, "dtype": "float32", "attn": "eager",
        "schema": "irene"}


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny-bert" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(TINY_BERT))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(directory))
    return directory


def run_json(capsys, *args: str) -> dict:
    assert main(["estimate", *args, "--gpu", "A100", "--json", "--depth", "-1"]) == 0
    return json.loads(capsys.readouterr().out)


def no_tracing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("traced although the trace was cached")

    monkeypatch.setattr(irene.estimate, "estimate_tree", refuse)


def test_the_same_call_again_is_served_from_the_cache_with_the_same_numbers(
        config, cache, capsys, monkeypatch):
    first = run_json(capsys, str(config.parent), "--batch-size", "2", "--seq-len", "8")
    assert len(list(cache.glob("*.json.gz"))) == 1
    no_tracing(monkeypatch)
    again = run_json(capsys, str(config.parent), "--batch-size", "2", "--seq-len", "8")
    assert again == first
    assert len(first["nodes"]) > 10


def test_every_input_of_the_trace_is_part_of_the_key(config, cache, capsys, monkeypatch):
    run_json(capsys, str(config.parent), "--batch-size", "2", "--seq-len", "8")
    base = request_key(str(config.parent), 2, 8, **CALL)
    changed = [request_key(str(config.parent), 3, 8, **CALL),
               request_key(str(config.parent), 2, 9, **CALL),
               request_key(str(config.parent), 2, 8, **{**CALL, "attn": "sdpa"}),
               request_key(str(config.parent), 2, 8, **{**CALL, "dtype": "bfloat16"}),
               request_key(str(config.parent), 2, 8, **{**CALL, "phase": "decode",
                                                       "context_len": 4}),
               request_key(str(config), 2, 8, **CALL)]  # another name: another model_name
    paths = {entry_path(cache, r) for r in [base, *changed]}
    assert len(paths) == 1 + len(changed)
    # the config file's bytes: an edited config is traced again
    config.write_text(json.dumps({**TINY_BERT, "intermediate_size": 96}))
    assert request_key(str(config.parent), 2, 8, **CALL) != base
    wider = run_json(capsys, str(config.parent), "--batch-size", "2", "--seq-len", "8")
    assert len(list(cache.glob("*.json.gz"))) == 2
    # the software: another irene, torch or transformers misses every entry
    monkeypatch.setattr(tree_cache, "software_key", lambda: {"irene": "another"})
    assert load_tree(cache, request_key(str(config.parent), 2, 8, **CALL), print) is None
    assert wider["energy_j"] > 0


def test_software_key_digests_every_package_file():
    key = tree_cache.software_key()
    assert len(key["irene_files"]) == 64
    assert {"torch", "transformers", "python", "irene"} <= set(key)


def test_a_damaged_entry_is_reported_and_traced_again(config, cache, capsys):
    first = run_json(capsys, str(config.parent), "--batch-size", "1", "--seq-len", "4")
    (entry,) = cache.glob("*.json.gz")
    entry.write_bytes(b"not gzip")
    assert main(["estimate", str(config.parent), "--batch-size", "1", "--seq-len", "4",
                 "--gpu", "A100", "--json", "--depth", "-1"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == first
    assert "unreadable trace-cache entry" in out.err
    with gzip.open(entry, "rt") as handle:  # rewritten by the new trace
        assert json.load(handle)["request"]["batch_size"] == 1
    # valid JSON of another request under this name is not used either
    with gzip.open(entry, "wt") as handle:
        json.dump({"request": {"format": 0}, "tree": {}}, handle)
    warnings: list[str] = []
    assert load_tree(cache, request_key(str(config.parent), 1, 4, **CALL), warnings.append) \
        is None
    assert "another request" in warnings[0]


def test_what_is_not_cached(config, tmp_path, tiny_model):
    assert request_key("someone/unknown-model", 1, 4, **CALL) is None  # a Hub name
    assert request_key(tiny_model("gpt2", "eager", n_layer=1), 1, 4, **CALL) is None
    assert request_key("bert-base-uncased", 1, 4, **CALL)["config"] == {
        "builtin": "bert-base-uncased"}
    # a trace that fell back to real weights is not kept
    est = estimate_on_gpu(str(config.parent), 1, 4, gpu="A100", hub=False)
    tree = est.tree.copy()
    tree.meta["traced_on"] = "cpu"
    request = request_key(str(config.parent), 1, 4, **CALL)
    assert store_tree(tmp_path / "c", request, tree, print) is None
    assert not (tmp_path / "c").exists()


def test_the_library_call_uses_a_cache_only_when_given_one(config, tmp_path, monkeypatch):
    fresh = estimate_on_gpu(str(config.parent), 2, 8, gpu="H100", hub=False,
                            trace_cache=tmp_path / "c")
    assert list((tmp_path / "c").glob("*.json.gz"))
    no_tracing(monkeypatch)
    cached = estimate_on_gpu(str(config.parent), 2, 8, gpu="H100", hub=False,
                             trace_cache=tmp_path / "c")
    assert cached.tree.meta["trace_cache"].startswith(str(tmp_path / "c"))
    for a, b in zip(fresh.tree.nodes(), cached.tree.nodes(), strict=True):
        assert (a.scope, a.features, a.predicted_energy, a.extra) == \
            (b.scope, b.features, b.predicted_energy, b.extra)
    with pytest.raises(AssertionError, match="traced although"):
        estimate_on_gpu(str(config.parent), 2, 8, gpu="H100", hub=False)


def test_where_the_cache_lives(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, "off")
    assert default_cache_dir() is None
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "irene" / "traces"


def test_prune_keeps_the_most_recently_used(tmp_path):
    import os

    for k in range(5):
        path = tmp_path / f"{k}.json.gz"
        path.write_bytes(b"x")
        os.utime(path, ns=(k * 10**9, k * 10**9))
    removed = prune(tmp_path, keep=3)
    assert sorted(p.name for p in removed) == ["0.json.gz", "1.json.gz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2.json.gz", "3.json.gz", "4.json.gz"]


def test_paused_gc_restores_the_collector():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
