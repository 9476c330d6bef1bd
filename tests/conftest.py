"""Shared test set-up. The helpers every test file may import live in ``tests/support/``
(tiny models: :mod:`support.models`; trees: :mod:`support.trees`; campaign plans:
:mod:`support.campaign`; a fake pynvml: :mod:`support.fakes`); test files never import each
other. This file puts ``tests/`` on the import path (whatever pytest's import mode) and offers
the tiny models as fixtures too.

Markers (pyproject.toml): ``slow`` (over 10 s; the quick loop is ``pytest -m "not slow"``).
Every run uses two processes (pyproject's ``addopts``: the dev extra's pytest-xdist with
``-n 2 --dist loadfile``, which keeps each file's module-scoped fixtures in one process; every
test is safe to run in parallel; ``-n 0`` runs in one process),
``gpu``, ``rapl``, ``browser``, ``ray``, ``mlflow`` (skipped where the hardware or extra is absent).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
# no test reads or writes the user's trace cache (irene.tracing.tree_cache): every test traces;
# the cache's own tests name a directory of their own
os.environ["IRENE_CACHE_DIR"] = "off"


@pytest.fixture()
def tiny_model():
    """The factory :func:`support.models.tiny_model`: ``tiny_model("gpt2", "eager", n_layer=1)``."""
    from support.models import tiny_model as factory

    return factory


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    """Two synthetic trees of one model, seq 32 and 64 (a file: ``two.jsonl``)."""
    from irene.synthetic import DEFAULT_ARCHS, make_synthetic_trees
    from irene.tree import write_trees

    path = tmp_path_factory.mktemp("data") / "two.jsonl"
    write_trees(make_synthetic_trees(DEFAULT_ARCHS[:1], batch_sizes=(1,), seq_lens=(32, 64)),
                path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Synthetic trees of two models at batch 1 and 8, seq 32 (a file: ``trees.jsonl``)."""
    from irene.synthetic import DEFAULT_ARCHS, make_synthetic_trees
    from irene.tree import write_trees

    path = tmp_path_factory.mktemp("data") / "trees.jsonl"
    write_trees(make_synthetic_trees(DEFAULT_ARCHS[:2], batch_sizes=(1, 8), seq_lens=(32,)), path)
    return path


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    """A directory holding :data:`TINY_BERT_CONFIG` as ``config.json``."""
    import json

    from support.models import TINY_BERT_CONFIG

    directory = tmp_path / "tiny-bert"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(TINY_BERT_CONFIG))
    return directory
