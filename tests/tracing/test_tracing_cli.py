"""``irene trace`` / ``irene models`` and the built-in model registry (no download anywhere)."""

from __future__ import annotations

import json

import pytest
from support.models import bert_config

from irene.cli import main
from irene.tracing import BUILTIN_MODELS, UnknownModelError, build_model, list_models
from irene.tracing.registry import ALIASES, load_config, parameter_count
from irene.tree import read_trees

IRENE_MODELS = ["bert-base-uncased", "distilbert-base-uncased", "roberta-base", "gpt2",
                "distilgpt2", "openai-gpt"]


@pytest.fixture()
def tiny_config_dir(tmp_path):
    config = bert_config(num_hidden_layers=1)
    directory = tmp_path / "tiny-bert"
    config.save_pretrained(directory)
    return directory


# -- registry -----------------------------------------------------------------------------------

def test_builtins_cover_irene_and_modern_decoders():
    names = list_models()
    assert names[:6] == IRENE_MODELS
    assert {"EleutherAI/pythia-410m", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "microsoft/phi-2",
            "codeparrot/codeparrot-small"} <= set(names)
    assert all(target in BUILTIN_MODELS for target in ALIASES.values())


@pytest.mark.parametrize("name, params", [
    # base-model parameter counts of the public checkpoints (no task head)
    ("bert-base-uncased", 109_482_240),
    ("gpt2", 124_439_808),
    ("distilgpt2", 81_912_576),
    ("EleutherAI/pythia-410m", 405_334_016 - 50_304 * 1024),  # minus embed_out
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 1_100_048_384 - 32_000 * 2048),  # minus lm_head
    ("microsoft/phi-2", 2_779_683_840 - (51_200 * 2560 + 51_200)),  # minus lm_head (+bias)
])
def test_builtin_configs_have_the_public_sizes(name, params):
    assert parameter_count(load_config(name)) == params


def test_public_hyper_parameters():
    llama = load_config("TinyLlama/TinyLlama-1.1B")  # alias
    assert (llama.hidden_size, llama.intermediate_size, llama.num_hidden_layers,
            llama.num_attention_heads, llama.num_key_value_heads) == (2048, 5632, 22, 32, 4)
    phi = load_config("microsoft/phi-2")
    assert phi.rope_parameters["partial_rotary_factor"] == pytest.approx(0.4)
    pythia = load_config("pythia-410m")
    assert pythia.rope_parameters["partial_rotary_factor"] == pytest.approx(0.25)
    roberta = load_config("roberta-base")
    assert (roberta.vocab_size, roberta.max_position_embeddings, roberta.type_vocab_size) == \
        (50265, 514, 1)
    assert load_config("codeparrot-small").vocab_size == 32768


def test_unknown_name_lists_the_builtins():
    with pytest.raises(UnknownModelError) as err:
        load_config("no-such-model", hub=False)
    for name in list_models():
        assert name in str(err.value)


def test_local_directory_and_config_json(tiny_config_dir):
    for path in (tiny_config_dir, tiny_config_dir / "config.json"):
        model = build_model(str(path), hub=False)
        assert type(model).__name__ == "BertModel" and not model.training
        assert model.config.hidden_size == 32


def test_local_directory_without_config(tmp_path):
    with pytest.raises(UnknownModelError, match="no config.json"):
        load_config(str(tmp_path))


def test_build_is_deterministic_and_casts(tiny_config_dir):
    a = build_model(str(tiny_config_dir), hub=False, dtype="bfloat16")
    b = build_model(str(tiny_config_dir), hub=False, dtype="bfloat16")
    wa, wb = (m.embeddings.word_embeddings.weight for m in (a, b))
    assert str(wa.dtype) == "torch.bfloat16" and bool((wa == wb).all())
    with pytest.raises(ValueError, match="attn"):
        build_model(str(tiny_config_dir), hub=False, attn="flash")


# -- CLI ----------------------------------------------------------------------------------------

def test_trace_sweep_then_resume_skips_done(tiny_config_dir, tmp_path, capsys):
    out = tmp_path / "out" / "trees.jsonl"
    model = str(tiny_config_dir)
    argv = ["trace", model, "--batch-sizes", "1,2", "--seq-lens", "4,8", "--no-timing",
            "--offline", "-o", str(out)]
    assert main(argv) == 0
    trees = read_trees(out)
    assert sorted(t.key[1:3] for t in trees) == [(1, 4), (1, 8), (2, 4), (2, 8)]
    assert all(t.model_name == model for t in trees)
    first_lines = out.read_text().splitlines()

    argv[3] = "1,2,3"
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "4 of 6 combinations already traced" in err
    lines = out.read_text().splitlines()
    assert lines[:4] == first_lines  # appended, earlier trees untouched
    keys = [t.key[1:3] for t in read_trees(out)]
    assert sorted(keys) == [(1, 4), (1, 8), (2, 4), (2, 8), (3, 4), (3, 8)]
    assert len(keys) == len(set(keys))

    assert main(argv) == 0  # everything done: nothing written
    assert out.read_text().splitlines() == lines


def test_trace_with_timing_and_simulated_meter(tiny_config_dir, tmp_path):
    out = tmp_path / "t.jsonl"
    assert main(["trace", str(tiny_config_dir), "--batch-size", "2", "--seq-len", "4",
                 "--runs", "1", "--min-run-seconds", "0", "--meter", "simulated",
                 "--offline", "-o", str(out)]) == 0
    [tree] = read_trees(out)
    assert tree.key[1:3] == (2, 4)
    assert tree.meta["meter"] == "simulated" and tree.meta["protocol"]["runs"] == 1
    assert all(n.features["times_mean"] > 0 and n.ground_truth_energy is not None
               for n in tree.nodes())


def test_measured_sweep_killed_half_way_resumes_without_re_measuring(tiny_config_dir, tmp_path,
                                                                     monkeypatch):
    """A sweep with a meter dies on its third tree: the two finished trees are on disk, and the
    rerun measures only the two combinations that are missing."""
    import irene.tracing.tracer as tracing

    out = tmp_path / "sweep.jsonl"
    argv = ["trace", str(tiny_config_dir), "--batch-sizes", "1,2", "--seq-lens", "4,8",
            "--runs", "1", "--min-run-seconds", "0", "--meter", "simulated", "--offline",
            "-o", str(out)]
    real = tracing.trace_model
    measured: list[tuple[int, int]] = []

    def dies_on_third(model, batch_size, seq_len, **kwargs):
        if len(measured) == 2:
            raise KeyboardInterrupt  # the process is killed mid-sweep
        measured.append((batch_size, seq_len))
        return real(model, batch_size, seq_len, **kwargs)

    monkeypatch.setattr(tracing, "trace_model", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    assert [t.key[1:3] for t in read_trees(out)] == measured

    measured_again: list[tuple[int, int]] = []

    def counting(model, batch_size, seq_len, **kwargs):
        measured_again.append((batch_size, seq_len))
        return real(model, batch_size, seq_len, **kwargs)

    monkeypatch.setattr(tracing, "trace_model", counting)
    assert main(argv) == 0
    assert sorted(measured + measured_again) == [(1, 4), (1, 8), (2, 4), (2, 8)]
    assert not set(measured) & set(measured_again)
    trees = read_trees(out)
    assert len(trees) == 4 and all(t.root.ground_truth_energy > 0 for t in trees)


def test_trace_errors_are_one_line_exit_2(tiny_config_dir, tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert main(["trace", "no-such-model", "--offline", "--no-timing", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'no-such-model'" in err and "bert-base-uncased" in err
    assert not out.exists()
    assert main(["trace", str(tiny_config_dir), "--no-timing", "--meter", "simulated",
                 "-o", str(out)]) == 2
    assert "--no-timing" in capsys.readouterr().err
    assert main(["trace", str(tiny_config_dir), "--seq-len", "100", "--no-timing",
                 "--offline", "-o", str(out)]) == 2
    assert "exceeds the 64 positions" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["trace", "gpt2", "--batch-sizes", "8,x", "-o", str(out)])


def test_resume_refuses_a_corrupt_output(tiny_config_dir, tmp_path, capsys):
    out = tmp_path / "bad.jsonl"
    out.write_text(json.dumps({"model_name": "m"}) + "\n")
    assert main(["trace", str(tiny_config_dir), "--no-timing", "--offline",
                 "-o", str(out)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_models_lists_builtins(capsys):
    assert main(["models", "--no-params"]) == 0
    text = capsys.readouterr().out
    for name in list_models():
        assert name in text
