"""Reliability round 3, inputs: incomplete or impossible configs, unbounded work, and files or
options that used to end in a traceback. Each case is run the way a user would run it: one line
naming the file (line, field) or the option, exit code 2, nothing written."""

from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path

import pytest

from irene import limits
from irene.cli import main
from irene.tree import TreeFormatError, read_trees, write_trees

LLAMA = {"model_type": "llama", "vocab_size": 128, "hidden_size": 32, "intermediate_size": 64,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "max_position_embeddings": 64}
MIXTRAL = {**LLAMA, "model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 2}
DEEP = 100_000


def config_dir(tmp_path: Path, spec: dict | str, name: str = "model") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    text = spec if isinstance(spec, str) else json.dumps(spec)
    (directory / "config.json").write_text(text)
    return directory


def refused(argv: list[str], capsys, *needles: str) -> str:
    """Run ``irene argv``: exit 2 (returned or from argparse), one line on stderr holding every
    needle; returns that line."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err and "Traceback" not in "\n".join(err)
    line = err[-1]
    for needle in needles:
        assert needle in line, line
    return line


def trace_argv(model: Path | str, out: Path) -> list[str]:
    return ["trace", str(model), "-o", str(out), "--no-timing", "--batch-size", "1",
            "--seq-len", "4", "--offline"]


def serving_argv(model: Path | str, *extra: str) -> list[str]:
    return ["estimate", str(model), "--serving", "vllm", "--gpu", "H100", "--offline", *extra]


# -- incomplete or impossible configs: refused on the tracer and the serving path -----------

@pytest.mark.parametrize("spec, field", [
    ({k: v for k, v in LLAMA.items() if k != "hidden_size"}, "'hidden_size' missing"),
    ({"model_type": "llama", "num_hidden_layers": 2}, "missing"),
    ({"model_type": "gpt2", "n_layer": 2, "n_head": 2, "vocab_size": 64}, "'n_embd' missing"),
    ({**MIXTRAL, "num_experts_per_tok": 16}, "16 experts per token but only 8"),
    ({**LLAMA, "hidden_size": -32}, "'hidden_size' must be an integer from 1"),
    ({**LLAMA, "num_key_value_heads": 3}, "num_key_value_heads"),
    ({**LLAMA, "num_attention_heads": 5}, "attention heads"),
    ({**LLAMA, "hidden_size": "abc"}, "'hidden_size'"),
    ({**LLAMA, "quantization_config": "fp8"}, "'quantization_config' must be an object"),
    ({**LLAMA, "num_hidden_layers": 10**8}, f"from 1 to {limits.MAX_LAYERS}"),
    (json.dumps(LLAMA).replace('"vocab_size": 128', '"vocab_size": ' + "9" * 5000),
     "'vocab_size' must be a finite number"),
    ("[" * DEEP + "]" * DEEP, "nested too deeply"),
    ({**LLAMA, "hidden_size": 1 << 17, "intermediate_size": 1 << 18, "num_hidden_layers": 1000,
      "num_attention_heads": 1024, "num_key_value_heads": 1024}, "parameters, more than"),
])
@pytest.mark.parametrize("path", ["trace", "serving"])
def test_incomplete_or_impossible_configs_are_refused(spec, field, path, tmp_path, capsys):
    model = config_dir(tmp_path, spec)
    out = tmp_path / "out.jsonl"
    argv = trace_argv(model, out) if path == "trace" else serving_argv(model)
    refused(argv, capsys, str(model / "config.json"), field)
    assert not out.exists()


def test_every_built_in_config_passes_the_checks():
    from irene.tracing.registry import list_models, load_config

    for name in list_models():
        load_config(name, hub=False)  # raises ConfigError if a check were wrong


def test_complete_configs_are_still_traced_and_estimated(tmp_path):
    out = tmp_path / "out.jsonl"
    assert main(trace_argv(config_dir(tmp_path, LLAMA, "llama"), out)) == 0
    assert len(read_trees(out)) == 1
    assert main(serving_argv(config_dir(tmp_path, MIXTRAL, "mixtral"), "--json", "--prompt-len",
                             "16", "--new-tokens", "16")) == 0


def test_weights_beyond_memory_are_refused_before_the_build(tmp_path, monkeypatch, capsys):
    from irene.tracing import registry

    monkeypatch.setattr(registry, "physical_memory", lambda: 10**4)  # a 10 kB machine
    model = config_dir(tmp_path, LLAMA)
    out = tmp_path / "out.jsonl"
    refused(["trace", str(model), "-o", str(out), "--batch-size", "1", "--seq-len", "4",
             "--runs", "1", "--warmup", "0"], capsys, "GB of memory", "--no-timing")
    assert not out.exists()


# -- unbounded work: refused before it starts -----------------------------------------------

def plan(tmp_path: Path, body: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"name: p\noutput: {tmp_path / 'out.jsonl'}\n{body}")
    return path


def test_a_huge_grid_is_counted_before_it_is_expanded(tmp_path, capsys):
    grid = plan(tmp_path, f"models: [gpt2]\nmeter: none\ntiming: false\n"
                          f"grid: {{batch_sizes: {list(range(1, 1001))}, "
                          f"seq_lens: {list(range(1, 961))}}}\n")
    refused(["run", str(grid), "--dry-run"], capsys, str(grid), "960000 trees",
            str(limits.MAX_PLAN_ITEMS))


def test_a_yaml_alias_bomb_is_refused(tmp_path, capsys):
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = plan(tmp_path, "\n".join(rows) + "\n")
    refused(["run", str(bomb), "--dry-run"], capsys, str(bomb), "aliases")


@pytest.mark.parametrize("body, needle", [
    ("x: " + "[" * DEEP + "]" * DEEP + "\n", "nested too deeply"),
    ("budget_minutes: " + "9" * 5000 + "\n", "not valid YAML"),
    ("models: [gpt2]\ngrid: {batch_sizes: [1], seq_lens: [8]}\nbudget_minutes: .inf\n",
     "budget_minutes: must be a finite number"),
])
def test_plan_files_that_used_to_raise_are_one_line(body, needle, tmp_path, capsys):
    refused(["run", str(plan(tmp_path, body)), "--dry-run"], capsys, "plan.yaml", needle)


@pytest.mark.parametrize("value", ["inf", "nan", "1e308", "-5", "0"])
def test_budget_minutes_is_checked_before_any_work(value, tmp_path, capsys):
    good = plan(tmp_path, "models: [gpt2]\ngrid: {batch_sizes: [1], seq_lens: [8]}\n"
                          "timing: false\n")
    refused(["run", str(good), "--budget-minutes", value], capsys, "--budget-minutes")
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("argv, needle", [
    (["trace", "gpt2", "-o", "o.jsonl", "--batch-size", "1000000000"], "--batch-size"),
    (["trace", "gpt2", "-o", "o.jsonl", "--seq-lens", "8,99999999999"], "--seq-lens"),
    (["estimate", "gpt2", "--batch-size", "9" * 5000, "--seq-len", "8"], "--batch-size"),
    (serving_argv("Qwen/Qwen3-8B", "--concurrency", "1e308"), "--concurrency"),
    (serving_argv("Qwen/Qwen3-8B", "--concurrency", "nan"), "--concurrency"),
    (serving_argv("Qwen/Qwen3-8B", "--prompt-len", "10000000000"), "--prompt-len"),
    (["estimate", "gpt2", "--prompt-len", "8", "--new-tokens", "8", "--context-len",
      "-1"], "--context-len"),
])
def test_number_options_are_bounded(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    refused(argv, capsys, needle)
    assert not (tmp_path / "o.jsonl").exists()


def test_a_call_too_large_is_refused_before_allocation(tmp_path, capsys):
    from irene.tracing import build_model, trace_model

    out = tmp_path / "o.jsonl"
    refused(["trace", "gpt2", "-o", str(out), "--no-timing", "--batch-size", "1048576",
             "--seq-len", "64"], capsys, "tokens in one call")
    assert not out.exists()
    model = build_model(config_dir(tmp_path, {**LLAMA, "max_position_embeddings": 1 << 16}))
    with pytest.raises(ValueError, match="one activation would hold"):
        trace_model(model, 256, 60_000, timing=False)  # 9e11 attention scores, not allocated


def test_serving_library_refuses_unbounded_numbers():
    from irene.serving.estimate import ServingEstimateError, estimate_serving

    for kwargs in ({"concurrency": 1e308}, {"new_tokens": float("inf")},
                   {"prompt_len": 10**12}):
        with pytest.raises(ServingEstimateError, match="must be a number from"):
            estimate_serving("Qwen/Qwen3-8B", hub=False, **kwargs)


# -- predictor settings: the file, line and setting, or the option ------------------------------

@pytest.mark.parametrize("text, needle", [
    ('{\n  "epochs": 3,\n  "polynomial_degree": 9\n}',
     ":3: polynomial_degree: must be an integer from 1 to 4, got int 9"),
    ('{\n  "_comment": "mine",\n  "learning_rat": 0.1\n}',
     ":3: learning_rat: unknown key; did you mean 'learning_rate'?"),
    ('[1, 2]', ":1: (top level): must be a JSON object, got list"),
    ('{"epochs": 3,\n "epochs": 4}', ":2: epochs: duplicate key"),
])
def test_bad_predictor_settings_name_file_line_and_setting(two, tmp_path, capsys, text, needle):
    cfg = tmp_path / "irene.json"
    cfg.write_text(text)
    refused(["train", str(two), str(tmp_path / "m"), "--config", str(cfg)], capsys,
            f"{cfg}{needle}")
    assert not (tmp_path / "m").exists()


def test_a_bad_set_value_names_the_option_not_the_file(two, tmp_path, capsys):
    cfg = tmp_path / "irene.json"
    cfg.write_text('{"epochs": 3}')
    refused(["train", str(two), str(tmp_path / "m"), "--config", str(cfg), "--set", "tol=2"],
            capsys, "--set: tol: must be a number >= 0 and <= 1, got int 2")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("name, text, needle", [
    ("gpu.yaml", "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)), "aliases"),
    ("gpu.json", '{"a":' * 10_000 + "1" + "}" * 10_000, "nested too deeply"),
    ("gpu.json", " " * 70_000, "cannot read the GPU specification (70000 bytes, more than"),
    ("gpu.yaml", "name: x\nbase: H100\ntflops: {bf16: 0}\n",
     ":3: tflops.bf16: must be a positive number, got int 0"),
])
def test_a_bad_gpu_spec_file_is_one_line(tmp_path, capsys, name, text, needle):
    spec = tmp_path / name
    spec.write_text(text)
    refused(["estimate", "Qwen/Qwen3-8B", "--serving", "vllm", "--gpu-spec", str(spec),
             "--offline"], capsys, str(spec), needle)


# -- files that used to end in a traceback ---------------------------------------------------

def test_deeply_nested_json_is_one_line_everywhere(two, tmp_path, capsys):
    deep = '{"a":' * DEEP + "1" + "}" * DEEP
    cfg = tmp_path / "deep.json"
    cfg.write_text(deep)
    refused(trace_argv(cfg, tmp_path / "o.jsonl"), capsys, str(cfg), "nested too deeply")
    refused(serving_argv(cfg), capsys, str(cfg), "nested too deeply")
    refused(serving_argv("Qwen/Qwen3-8B", "--serving-predictor", str(cfg)), capsys, str(cfg),
            "nested too deeply")
    refused(["train", str(two), str(tmp_path / "m"), "--config", str(cfg)], capsys, str(cfg),
            "nested too deeply")
    refused(["train", str(two), str(tmp_path / "m"), "--set", "epochs=" + "[" * DEEP],
            capsys, "--set epochs")
    model = tmp_path / "m"
    assert main(["train", str(two), str(model), "--set", "epochs=2"]) == 0
    (model / "config.json").write_text(deep)
    refused(["predict", str(two), str(tmp_path / "p.jsonl"), str(model)], capsys,
            "config.json", "nested too deeply")
    lines = tmp_path / "deep.jsonl"
    lines.write_text("[" * DEEP + "]" * DEEP + "\n")
    refused(["report", str(lines), "-o", str(tmp_path / "r.html")], capsys,
            f"{lines}:1", "nested too deeply")
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "r.html").exists()


def test_a_5000_digit_integer_in_a_trees_file_names_line_and_field(two, tmp_path):
    first, second = two.read_text().splitlines()
    huge = tmp_path / "huge.jsonl"
    huge.write_text(first + "\n" + second.replace('"batch_size": 1', '"batch_size": '
                                                  + "9" * 5000, 1) + "\n")
    with pytest.raises(TreeFormatError, match=r"huge.jsonl:2, field 'batch_size': a number "
                                              "too large"):
        read_trees(huge)


def test_flipped_bytes_in_a_gzip_trees_file_are_one_line(two, tmp_path):
    packed = tmp_path / "two.jsonl.gz"
    write_trees(read_trees(two), packed)
    data = packed.read_bytes()
    damaged = tmp_path / "flip.jsonl.gz"
    outcomes = set()
    for i in range(0, len(data), max(1, len(data) // 150)):
        flipped = bytearray(data)
        flipped[i] ^= 0x5A
        damaged.write_bytes(bytes(flipped))
        try:
            read_trees(damaged)
            outcomes.add("read")
        except TreeFormatError as exc:
            assert str(exc).startswith(str(damaged)) and "\n" not in str(exc)
            outcomes.add("refused")
    assert "refused" in outcomes


def test_a_small_gzip_of_blank_lines_is_refused_early(tmp_path):
    bomb = tmp_path / "blank.jsonl.gz"
    bomb.write_bytes(gzip.compress(b"\n" * (64 * 2**20)))  # 64 KB on disk, 64 MiB inside
    with pytest.raises(TreeFormatError, match=f"blank.jsonl.gz:{limits.MAX_BLANK_LINES + 1}: "
                                              "more than"):
        read_trees(bomb)


def test_inconsistent_child_nodes_are_refused(two, tmp_path):
    line = json.loads(two.read_text().splitlines()[0])
    line["frontend_tree"]["child_nodes"] = ["root.bogus"]
    bad = tmp_path / "kids.jsonl"
    bad.write_text(json.dumps(line) + "\n")
    with pytest.raises(TreeFormatError, match=r"kids.jsonl:1, node 'root', field "
                                              r"'child_nodes': lists \['root.bogus'\]"):
        read_trees(bad)


def test_report_names_the_node_that_lacks_the_energy(two, tmp_path, capsys):
    line = json.loads(two.read_text().splitlines()[0])
    node = line["frontend_tree"]
    while node["child_nodes_obj"]:
        node = node["child_nodes_obj"][-1]
    del node["ground_truth_energy"]
    bad = tmp_path / "miss.jsonl"
    bad.write_text(json.dumps(line) + "\n")
    refused(["report", str(bad), "-o", str(tmp_path / "r.html")], capsys,
            f"{bad}:1", f"not on node {node['scope']!r}")
    assert not (tmp_path / "r.html").exists()


# -- the GPU a serving estimate answers for ---------------------------------------------------

@pytest.mark.parametrize("gpu", ["H100 NVL", "A100-PCIe-80GB", "H100-SXM-96GB"])
def test_an_unknown_gpu_variant_is_refused(gpu, capsys):
    refused(["estimate", "Qwen/Qwen3-8B", "--serving", "vllm", "--gpu", gpu], capsys,
            repr(gpu), "unknown GPU")


def test_gpu_variants_are_named_plainly_never_mapped_to_another_part():
    from irene.hardware.gpus import gpu_spec

    for name in ("H100", "h100", "H100-SXM", "h100 sxm5", "H100_SXM"):
        assert gpu_spec(name).name == gpu_spec("H100").name
    assert gpu_spec("h100-pcie").name != gpu_spec("H100").name
    assert gpu_spec("h100-pcie").power_limit_w < gpu_spec("H100").power_limit_w


# -- bench model directories ------------------------------------------------------------------

def gpt2_dir(tmp_path: Path, name: str) -> Path:
    from transformers import GPT2Config

    directory = tmp_path / name
    GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0,
               eos_token_id=0).save_pretrained(directory)
    return directory


class _Planted:
    """A pickle that would create a file if it ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_bench_weights_that_cannot_load_are_one_line(tmp_path, capsys):
    corrupt = gpt2_dir(tmp_path, "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    refused(["bench", str(corrupt), "--seq-len", "8"], capsys, str(corrupt),
            "the weights cannot be loaded")
    planted = gpt2_dir(tmp_path, "pickled")
    ran = tmp_path / "ran"
    with open(planted / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weight": _Planted(ran)}, handle)
    refused(["bench", str(planted), "--seq-len", "8"], capsys, str(planted),
            "nothing in it was run")
    assert not ran.exists()


def test_a_trace_sweep_is_counted_before_it_is_expanded(tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    many = ",".join(str(n) for n in range(1, 20_001))
    refused(["trace", "gpt2", "-o", str(out), "--no-timing", "--batch-sizes", many,
             "--seq-lens", many], capsys, "400000000 trees", str(limits.MAX_PLAN_ITEMS))
    assert not out.exists()


def test_blank_lines_of_spaces_are_bounded_in_characters_too(tmp_path):
    spaces = tmp_path / "spaces.jsonl.gz"
    spaces.write_bytes(gzip.compress((b" " * (1 << 20) + b"\n") * 80))  # 80 MiB of nothing
    with pytest.raises(TreeFormatError, match="spaces.jsonl.gz:64: more than"):
        read_trees(spaces)


def test_a_plan_naming_an_incomplete_config_is_refused(tmp_path, capsys):
    model = config_dir(tmp_path, {k: v for k, v in LLAMA.items() if k != "hidden_size"})
    bad = plan(tmp_path, f"models: [{model}]\ngrid: {{batch_sizes: [1], seq_lens: [8]}}\n"
                         "timing: false\n")
    refused(["run", str(bad), "--dry-run"], capsys, f"{bad}:3: models[0]",
            "'hidden_size' missing")


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "1000000000"], "--batch-size must be at most"),
    (["--batch-size", "1048576", "--seq-len", "1024"], "tokens in one call"),
])
def test_bench_sizes_are_bounded_before_the_model_is_built(args, needle, tmp_path, capsys):
    model = gpt2_dir(tmp_path, "gpt2")
    refused(["bench", str(model), *args], capsys, needle)


def test_a_serving_request_beyond_the_positions_is_refused(capsys):
    refused(serving_argv("Qwen/Qwen3-8B", "--prompt-len", "1000000", "--new-tokens", "1000"),
            capsys, "Qwen/Qwen3-8B", "exceed its 40960 positions")
