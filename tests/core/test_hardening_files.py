"""Reliability round 3, files and persistence (issue 20, item 4): locks never follow links,
appending never loses trees, the measurement cache is validated like trees, a model is replaced
only after every check and a killed swap is recovered, torn outputs resume in ``run`` as in
``trace``, CSV cells are never formulas, shipped data survives line-end conversion, write errors
name the output, and temporary files of killed writers are cleaned up."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from support.paths import ROOT as REPO

from irene.cli import main
from irene.files import atomic_write, exclusive_lock, remove_stale_temp_files
from irene.model import IreneRegressor, PredictionError, load_predictor
from irene.synthetic import DEFAULT_ARCHS, make_synthetic_trees
from irene.tree import TreeFormatError, append_tree, inspect_tail, read_trees, write_trees

TINY_PLANS = REPO / "configs" / "plans" / "tiny"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def trace_argv(config: Path, out: Path, batch: int = 1) -> list[str]:
    return ["trace", str(config), "--no-timing", "--offline", "-o", str(out),
            "--batch-size", str(batch), "--seq-len", "4"]


def write_plan(directory: Path, **overrides) -> Path:
    """A small campaign plan (tiny configs copied beside it)."""
    if not (directory / "tiny").exists():
        shutil.copytree(TINY_PLANS, directory / "tiny")
    plan = {"name": "t", "output": str(directory / "out" / "trees.jsonl"),
            "models": ["tiny/gpt2"], "grid": {"batch_sizes": [1], "seq_lens": [4, 8]},
            "dtypes": ["float32"], "attn": "eager", "device": "cpu", "meter": "simulated",
            "protocol": {"warmup": 0, "runs": 1, "min_run_seconds": 0.001}}
    plan.update(overrides)
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def one_error_line(err: str) -> str:
    """The one ``irene CMD: error: ...`` line of a run's stderr (no traceback)."""
    lines = [line.split("\r")[-1] for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- a planted lock link never redirects the lock -------------------------------------------

@pytest.mark.parametrize("link", ["symlink", "dangling", "hardlink"])
def test_a_link_at_the_lock_path_is_refused_and_its_target_kept(tiny_config, tmp_path, capsys,
                                                                link):
    out = tmp_path / "trees.jsonl"
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me\n")
    lock = tmp_path / ".trees.jsonl.lock"
    if link == "symlink":
        lock.symlink_to(victim)
    elif link == "dangling":
        lock.symlink_to(tmp_path / "created-by-nobody")
    else:
        os.link(victim, lock)
    assert main(trace_argv(tiny_config, out)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(lock) in line and "link" in line
    assert victim.read_text() == "do not truncate me\n"
    assert not (tmp_path / "created-by-nobody").exists() and not out.exists()


def test_irene_run_refuses_a_lock_symlink_too(tmp_path, capsys):
    plan = write_plan(tmp_path, timing=False, meter="none")
    (tmp_path / "out").mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep\n")
    (tmp_path / "out" / ".trees.jsonl.lock").symlink_to(victim)
    assert main(["run", str(plan), "--no-progress"]) == 2
    assert "symbolic link" in one_error_line(capsys.readouterr().err)
    assert victim.read_text() == "keep\n"
    assert not (tmp_path / "out" / "trees.jsonl").exists()


def test_the_lock_is_still_a_plain_file_that_holds_the_pid(tmp_path):
    out = tmp_path / "trees.jsonl"
    with exclusive_lock(out):
        assert (tmp_path / ".trees.jsonl.lock").read_text() == str(os.getpid())


# -- appending to a trees file never loses trees ------------------------------------------------

def _members(n: int = 4) -> list[bytes]:
    trees = make_synthetic_trees(DEFAULT_ARCHS[:1], batch_sizes=(1, 2), seq_lens=(32, 64))[:n]
    return [gzip.compress((t.to_json() + "\n").encode(), mtime=0) for t in trees]


def test_plain_text_named_gz_is_refused_not_replaced(tiny_config, tmp_path, capsys):
    out = tmp_path / "trees.jsonl.gz"
    out.write_bytes(b"".join(gzip.decompress(m) for m in _members()))  # plain text
    before = out.read_bytes()
    assert main(trace_argv(tiny_config, out, batch=4)) == 2
    assert "not gzip-compressed" in one_error_line(capsys.readouterr().err)
    assert out.read_bytes() == before


def test_gzip_data_named_jsonl_is_refused(tiny_config, tmp_path, capsys):
    out = tmp_path / "trees.jsonl"
    out.write_bytes(b"".join(_members(2)))
    before = out.read_bytes()
    assert main(trace_argv(tiny_config, out, batch=4)) == 2
    assert "gzip-compressed data" in one_error_line(capsys.readouterr().err)
    assert out.read_bytes() == before


def test_a_damaged_gzip_member_before_the_end_is_refused(tiny_config, tmp_path, capsys):
    out = tmp_path / "trees.jsonl.gz"
    members = _members()
    bad = bytearray(members[1])
    bad[-6] ^= 0xFF  # a flipped bit of member 2's CRC
    out.write_bytes(members[0] + bytes(bad) + b"".join(members[2:]))
    before = out.read_bytes()
    assert main(trace_argv(tiny_config, out, batch=4)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "gzip member 2" in line and "damaged" in line
    assert out.read_bytes() == before


def test_a_truncated_last_gzip_member_is_cut_and_the_others_kept(tiny_config, tmp_path, capsys):
    out = tmp_path / "trees.jsonl.gz"
    members = _members()
    whole = members[0] + members[1]
    out.write_bytes(whole + members[2][:40])  # killed while appending a third member
    assert main(trace_argv(tiny_config, out, batch=4)) == 0
    assert "truncated last gzip member" in capsys.readouterr().err
    assert out.read_bytes().startswith(whole)  # complete members kept byte for byte
    assert [t.batch_size for t in read_trees(out)] == [1, 1, 4]


def test_a_torn_line_after_a_damaged_line_is_not_repaired(tmp_path):
    out = tmp_path / "trees.jsonl"
    lines = [t.to_json() + "\n" for t in
             make_synthetic_trees(DEFAULT_ARCHS[:1], batch_sizes=(1, 2), seq_lens=(32,))]
    damaged = lines[0].replace('"batch_size": 1', '"batch_size": -1')
    out.write_text(damaged + lines[1] + lines[1][:50])
    before = out.read_bytes()
    with pytest.raises(TreeFormatError, match=r"trees.jsonl:1.*batch_size.*not repaired"):
        inspect_tail(out)
    out.write_text(lines[0] + "not json and not the start of a tree")
    with pytest.raises(TreeFormatError, match="neither a tree nor the start of one"):
        inspect_tail(out)
    out.write_bytes(before)


def test_a_failed_append_is_cut_back_and_names_the_output(tmp_path):
    """A full disk (here: a file-size limit, which fails writes the same way) mid-append."""
    out = tmp_path / "trees.jsonl"
    script = textwrap.dedent(f"""
        import resource, sys
        from irene.synthetic import DEFAULT_ARCHS, make_synthetic_trees
        from irene.tree import append_tree
        trees = make_synthetic_trees(DEFAULT_ARCHS[:1], batch_sizes=(1, 2), seq_lens=(32,))
        append_tree(trees[0], {str(out)!r})
        size = len(open({str(out)!r}, "rb").read())
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 1000, size + 1000))
        try:
            append_tree(trees[1], {str(out)!r})
        except OSError as exc:
            print(exc.filename, exc.strerror)
            sys.exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.split()[0] == str(out)
    assert [t.batch_size for t in read_trees(out)] == [1]
    assert out.read_bytes().endswith(b"\n")


def test_an_invalid_tree_is_never_appended(tmp_path):
    out = tmp_path / "trees.jsonl"
    tree = make_synthetic_trees(DEFAULT_ARCHS[:1], batch_sizes=(1,), seq_lens=(32,))[0]
    tree.root.ground_truth_energy = -1.0
    with pytest.raises(TreeFormatError, match="must not be negative"):
        append_tree(tree, out)
    assert not out.exists() or out.stat().st_size == 0


# -- irene run resumes from its own torn output, as trace does ---------------------------------

@pytest.mark.parametrize("name", ["trees.jsonl", "trees.jsonl.gz"])
def test_run_resumes_from_a_torn_output(tmp_path, capsys, name):
    out = tmp_path / "out" / name
    plan = write_plan(tmp_path, timing=False, meter="none", output=str(out),
                      grid={"batch_sizes": [1], "seq_lens": [4, 8, 16]})
    argv = ["run", str(plan), "--no-progress"]
    assert main(argv) == 0
    trees = read_trees(out)
    keep = trees[:2]
    write_trees(keep, tmp_path / "two" / name)
    two = (tmp_path / "two" / name).read_bytes()
    if name.endswith(".gz"):
        torn = gzip.compress((trees[2].to_json() + "\n").encode(), mtime=0)
        out.write_bytes(two + torn[: len(torn) // 2])
    else:
        out.write_bytes(two + (trees[2].to_json() + "\n").encode()[:300])
    capsys.readouterr()
    assert main(["run", str(plan), "--dry-run"]) == 0  # the dry run reads it, changes nothing
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "dropped a" in err and "2 of 3 trees already made" in err
    assert out.read_bytes().startswith(two)
    assert sorted(t.seq_len for t in read_trees(out)) == [4, 8, 16]


# -- the measurement cache is validated like trees ------------------------------------------------

@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[Path, Path, bytes]:
    """A campaign run with the simulated meter: (plan, output, cache bytes)."""
    directory = tmp_path_factory.mktemp("campaign")
    plan = write_plan(directory, grid={"batch_sizes": [1], "seq_lens": [4]})
    assert main(["run", str(plan), "--no-progress"]) == 0
    return plan, directory / "out" / "trees.jsonl", \
        (directory / "out" / "trees.measurements.json").read_bytes()


@pytest.mark.parametrize("field,value", [("energy_j", -1.0), ("energy_j", 1e300),
                                         ("energy_j", 0.0), ("time_s", -1.0),
                                         ("time_s", 1e300), ("time_s", 0.0),
                                         ("repeats", "3"), ("features", {"cpu": -5.0})])
def test_a_bad_cache_entry_is_refused_and_nothing_written(measured, tmp_path, capsys, field,
                                                          value):
    plan, _, cache = measured
    data = json.loads(cache)
    signature = next(iter(data["entries"]))
    data["entries"][signature][field] = value
    out = tmp_path / "out" / "trees.jsonl"
    out.parent.mkdir()
    (out.parent / "trees.measurements.json").write_text(json.dumps(data))
    assert main(["run", str(plan), "--no-progress", "--output", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "trees.measurements.json" in line and signature in line and field in line
    assert not out.exists()


@pytest.mark.parametrize("text", ['{"format": "irene-measurement-cache", "version": 1,',
                                  "[" * 100_000 + "]" * 100_000,
                                  '{"format": "irene-measurement-cache", "version": 1, '
                                  '"entries": {}, "context": {"hardware": 1}}'])
def test_a_malformed_cache_file_is_one_line_not_a_traceback(measured, tmp_path, capsys, text):
    plan, _, _ = measured
    out = tmp_path / "out" / "trees.jsonl"
    out.parent.mkdir()
    (out.parent / "trees.measurements.json").write_text(text)
    assert main(["run", str(plan), "--no-progress", "--output", str(out)]) == 2
    assert "trees.measurements.json" in one_error_line(capsys.readouterr().err)
    assert main(["run", str(plan), "--dry-run", "--output", str(out)]) == 2
    assert "trees.measurements.json" in one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_a_good_cache_still_resumes(measured, tmp_path):
    plan, output, cache = measured
    out = tmp_path / "out" / "trees.jsonl"
    out.parent.mkdir()
    (out.parent / "trees.measurements.json").write_bytes(cache)
    assert main(["run", str(plan), "--no-progress", "--output", str(out)]) == 0
    assert [t.root.ground_truth_energy for t in read_trees(out)] == \
        [t.root.ground_truth_energy for t in read_trees(output)]


def test_measurements_that_fail_the_checks_are_not_kept_for_reuse(tmp_path):
    from irene.campaign.cache import CacheContext, CampaignCache
    from irene.measure.protocol import Measurement

    context = CacheContext(hardware="cpu", device_type="cpu", cpu_model="x", meter="simulated",
                           meter_domains=("simulated",), protocol=())
    path = tmp_path / "trees.measurements.json"
    cache = CampaignCache(context, path)
    times = {"time_s": 1e-3, "time_p10": 1e-3, "time_p90": 1e-3, "repeats": 1, "runs": 1}
    zero = Measurement(**times, energy_j=0.0)  # e.g. <= 0 J after idle subtraction
    good = Measurement(**times, energy_j=1e-3)
    assert cache.get_or_measure("a", lambda: zero) is zero
    assert cache.get_or_measure("b", lambda: good) is good
    assert cache.add({"c": zero.to_dict(), "d": good.to_dict()}) == 1
    cache.save()
    assert CampaignCache.open(path, context).signatures() == {"b", "d"}


# -- a model is replaced only after every check; a killed swap is recovered ------------------------

def test_train_checks_predictions_before_replacing_the_model(data, tmp_path, capsys, monkeypatch):
    model_dir = tmp_path / "model"
    assert main(["train", str(data), str(model_dir), "--set", "epochs=2"]) == 0
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}

    def not_positive(self, trees, *args, **kwargs):
        raise PredictionError(f"{trees[0].where}: predicted energy 0.0 J is not positive")

    monkeypatch.setattr(IreneRegressor, "predict", not_positive)
    assert main(["train", str(data), str(model_dir), "--set", "epochs=3"]) == 2
    assert "not positive" in one_error_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def _train_killed_between_renames(data: Path, model_dir: Path) -> None:
    """Run ``irene train`` into ``model_dir`` in a process killed (os._exit: no cleanup, as
    SIGKILL) right after the swap's first rename."""
    script = textwrap.dedent(f"""
        import os
        real = os.rename
        def rename(src, dst):
            real(src, dst)
            if ".old." in os.fspath(dst):
                os._exit(9)
        os.rename = rename
        from irene.cli import main
        main(["train", {str(data)!r}, {str(model_dir)!r}, "--set", "epochs=3"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True,
                          timeout=300)
    assert proc.returncode == 9, proc.stderr.decode()


def test_a_swap_killed_between_its_renames_is_restored_at_the_next_load(data, tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert main(["train", str(data), str(model_dir), "--set", "epochs=2"]) == 0
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    _train_killed_between_renames(data, model_dir)
    assert not model_dir.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model.old.")]
    out = tmp_path / "pred.jsonl"
    capsys.readouterr()
    assert main(["predict", str(data), str(out), str(model_dir)]) == 0
    assert "restored the earlier output" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if ".old." in p.name]


def test_a_swap_killed_between_its_renames_is_completed_by_the_next_train(data, tmp_path):
    model_dir = tmp_path / "model"
    assert main(["train", str(data), str(model_dir), "--set", "epochs=2"]) == 0
    _train_killed_between_renames(data, model_dir)
    assert main(["train", str(data), str(model_dir), "--set", "epochs=2"]) == 0
    assert load_predictor(model_dir) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no .old, no staging


def test_sigterm_during_the_swap_waits_until_the_model_is_in_place(data, tmp_path):
    model_dir = tmp_path / "model"
    assert main(["train", str(data), str(model_dir), "--set", "epochs=2"]) == 0
    script = textwrap.dedent(f"""
        import os, signal
        real = os.rename
        def rename(src, dst):
            real(src, dst)
            if ".old." in os.fspath(dst):
                os.kill(os.getpid(), signal.SIGTERM)  # between the two renames
        os.rename = rename
        from irene.cli import main
        main(["train", {str(data)!r}, {str(model_dir)!r}, "--set", "epochs=3"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True,
                          timeout=300)
    assert proc.returncode == 128 + 15, proc.stderr.decode()
    assert json.loads((model_dir / "config.json").read_text())["config"]["epochs"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# -- CSV cells are never spreadsheet formulas ---------------------------------------------------

def test_export_escapes_formula_cells(tmp_path):
    trees = make_synthetic_trees(DEFAULT_ARCHS[:1], batch_sizes=(1,), seq_lens=(32,))
    names = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]
    made = []
    for name in names:
        tree = trees[0].copy()
        tree.model_name = name
        tree.root.instance_type = name
        made.append(tree)
    src = tmp_path / "t.jsonl"
    write_trees(made, src)
    out = tmp_path / "nodes.csv"
    assert main(["export", str(src), "-o", str(out)]) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    cells = {row["model_name"] for row in rows}
    assert cells == {"'" + n for n in names}
    assert not any(str(v).startswith(("=", "+", "@", "\t", "\r"))
                   for row in rows for v in row.values())
    assert any(row["error_pct"] == "" for row in rows)  # numbers and empty cells unchanged
    assert all(float(row["flops"]) >= 0 for row in rows)


# -- shipped data survives a checkout that converts line ends ----------------------------------

def test_the_shipped_hardware_parameters_load_after_crlf_conversion(tmp_path, monkeypatch):
    from irene.hardware import params

    text = params.SHIPPED_PATH.read_bytes()
    copy = tmp_path / "hardware_params.json"
    copy.write_bytes(text.replace(b"\n", b"\r\n"))
    monkeypatch.setattr(params, "SHIPPED_PATH", copy)
    assert params.load_hardware().fitted
    copy.write_bytes(text.replace(b'"format"', b' "format"', 1))  # any other change is refused
    with pytest.raises(params.ParamsFormatError, match="digest"):
        params.load_hardware()


def test_gitattributes_keep_shipped_data_byte_exact():
    check = subprocess.run(["git", "-C", str(REPO), "check-attr", "text", "eol", "binary", "--",
                            "irene/data/hardware_params.json",
                            "irene/data/synthetic_demo_trees.jsonl.gz"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip("not a git checkout")
    assert "irene/data/hardware_params.json: eol: lf" in check.stdout
    assert "irene/data/synthetic_demo_trees.jsonl.gz: binary: set" in check.stdout


# -- write errors name the output, not a temporary file -----------------------------------------

def test_a_write_error_names_the_output(data, tmp_path):
    out = tmp_path / "nodes.csv"
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        from irene.cli import main
        raise SystemExit(main(["export", {str(data)!r}, "-o", {str(out)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert f"{out}: File too large" in line and ".tmp" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_read_only_directory_error_names_the_output(tmp_path, monkeypatch):
    """A read-only directory (simulated: the tests may run as root, whom permissions do not
    stop) fails creating the temporary file; the error names the output."""
    import errno
    import tempfile

    out = tmp_path / "out.txt"

    def read_only(prefix: str, suffix: str, dir: Path) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}x1y2z3q4{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as info, atomic_write(out) as handle:
        handle.write("never")
    assert info.value.filename == str(out) and info.value.errno == errno.EACCES


# -- temporary files of killed writers are removed at the next write -----------------------------

def test_temp_files_of_a_killed_writer_are_removed_at_the_next_write(tmp_path):
    out = tmp_path / "out.json"
    script = textwrap.dedent(f"""
        import os
        from irene.files import atomic_write
        with atomic_write({str(out)!r}) as handle:
            handle.write("half")
            handle.flush()
            os._exit(9)  # as kill -9: no cleanup
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV)
    assert proc.wait(timeout=120) == 9
    orphans = [p.name for p in tmp_path.iterdir()]
    assert len(orphans) == 1 and orphans[0].startswith(f".out.json.{proc.pid}.")
    live = tmp_path / f".out.json.{os.getppid()}.abcdefgh.tmp"  # a live process's write
    live.write_text("in progress")
    other = tmp_path / f".other.json.{proc.pid}.abcdefgh.tmp"  # another output's
    other.write_text("not this output's")
    with atomic_write(out) as handle:
        handle.write("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", live.name,
                                                                 other.name])
    assert remove_stale_temp_files(tmp_path / "other.json") == [other.name]


def test_gitignore_covers_temp_lock_and_old_names():
    names = [".trees.jsonl.12345.abcdefgh.tmp", ".trees.jsonl.lock",
             ".model.old.12345.abcdefgh"]
    check = subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", *names],
                           capture_output=True, text=True)
    if check.returncode not in (0, 1):
        pytest.skip("not a git checkout")
    assert check.stdout.split() == names


def test_readers_skip_temp_files(tmp_path):
    trees = make_synthetic_trees(DEFAULT_ARCHS[:1], batch_sizes=(1,), seq_lens=(32,))
    write_trees(trees, tmp_path / "a.jsonl")
    (tmp_path / f".a.jsonl.{os.getpid()}.abcdefgh.tmp").write_text("torn")
    from irene.tree import read_tree_files

    assert len(read_tree_files([tmp_path])) == 1
