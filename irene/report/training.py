"""Training-step trees explained: the forward / backward / optimiser split, per module.

A training-step tree (:mod:`irene.tracing.train_step`, ``meta["phase"] == "train"``) has three
children under its root: ``forward``, ``backward`` and ``optimizer``. :func:`training_split`
returns their energies and shares, and a table of modules where each row sums the module's
forward, backward and optimiser energy (the three passes name a module the same way below their
pass: ``forward.bert.encoder``, ``backward.bert.encoder``, ``optimizer.bert.encoder``). Energies
are joules per training step; ``steps`` multiplies them for a run of N steps. Renderers for the
terminal, JSON and the HTML page are here too.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from irene.report.breakdown import Source, energy_source, node_energy, scope_pattern
from irene.report.format import energy_text, format_energy, format_percent
from irene.tree import Node, Tree

PASSES = ("forward", "backward", "optimizer")
TRAIN_PHASE = "train"


def is_training_step(tree: Tree) -> bool:
    """Whether ``tree`` is a training step (phase ``train`` with the three pass nodes)."""
    return tree.key.phase == TRAIN_PHASE and \
        [c.scope for c in tree.root.children] == list(PASSES)


@dataclass(frozen=True)
class ModuleSplit:
    """One module (or group of repeated modules, ``*`` for the layer index) over the passes:
    energies in J per step (None where the pass has no such node), share of the step."""

    label: str
    count: int
    forward_j: float | None
    backward_j: float | None
    optimizer_j: float | None
    share_of_step: float

    @property
    def total_j(self) -> float:
        return sum(v for v in (self.forward_j, self.backward_j, self.optimizer_j) if v)


@dataclass
class TrainingSplit:
    """Where one training step's energy goes: ``passes`` maps forward/backward/optimizer to J
    per step, ``shares`` to fractions of the step's energy (the root), ``flop_shares`` to
    fractions of the step's FLOPs; ``modules`` the per-module rows, largest first; ``steps``
    the number of steps the ``*_run`` totals are for."""

    tree: Tree
    source: Source
    total_j: float
    passes: dict[str, float]
    shares: dict[str, float]
    flop_shares: dict[str, float]
    modules: list[ModuleSplit] = field(default_factory=list)
    steps: int = 1

    @property
    def total_run_j(self) -> float:
        """Energy of ``steps`` training steps (J)."""
        return self.total_j * self.steps


def _module_nodes(pass_root: Node, depth: int) -> dict[str, list[Node]]:
    """Nodes ``depth`` levels below a pass root (shallower leaves too), by their scope with the
    pass name removed and layer indices replaced by ``*``."""
    out: dict[str, list[Node]] = {}
    stack = [(child, 1) for child in pass_root.children]
    while stack:
        node, level = stack.pop()
        if level >= depth or node.is_leaf:
            label = scope_pattern(node.scope.partition(".")[2])
            out.setdefault(label, []).append(node)
            continue
        stack.extend((child, level + 1) for child in node.children)
    return out


def training_split(tree: Tree, *, source: str = "auto", depth: int = 3,
                   steps: int = 1) -> TrainingSplit:
    """The :class:`TrainingSplit` of a training-step tree; modules ``depth`` levels below the
    passes (layers that differ only by index summed). ValueError for another kind of tree."""
    if not is_training_step(tree):
        raise ValueError(f"{tree.label}: not a training-step tree (trace with --phase train)")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    chosen = energy_source(tree, source)
    total = node_energy(tree.root, chosen)
    roots = {c.scope: c for c in tree.root.children}
    passes = {name: node_energy(roots[name], chosen) for name in PASSES}
    flops = tree.root.features["flops"]
    per_pass = {name: _module_nodes(roots[name], max(depth, 1)) for name in PASSES}
    labels = list(dict.fromkeys(label for name in PASSES for label in per_pass[name]))
    modules = []
    for label in labels:
        energies = {name: _sum(per_pass[name].get(label), chosen) for name in PASSES}
        count = max(len(per_pass[name].get(label, [])) for name in PASSES)
        row_total = sum(v for v in energies.values() if v)
        modules.append(ModuleSplit(label, count, energies["forward"], energies["backward"],
                                   energies["optimizer"], row_total / total if total else 0.0))
    modules.sort(key=lambda m: -m.total_j)
    return TrainingSplit(
        tree=tree, source=chosen, total_j=total, passes=passes,
        shares={k: v / total if total else 0.0 for k, v in passes.items()},
        flop_shares={k: roots[k].features["flops"] / flops if flops else 0.0 for k in PASSES},
        modules=modules, steps=steps)


def _sum(nodes: list[Node] | None, source: Source) -> float | None:
    return None if not nodes else sum(node_energy(n, source) for n in nodes)


def split_json(split: TrainingSplit, top: int | None = None) -> dict:
    """The split as JSON-ready data (J per step, fractions, ``steps`` and the run's total)."""
    return {
        "optimizer": split.tree.key.optimizer,
        "steps": split.steps,
        "energy_per_step_j": split.total_j,
        "energy_for_steps_j": split.total_run_j,
        "passes": {name: {"energy_j": split.passes[name], "share": split.shares[name],
                          "flops_share": split.flop_shares[name],
                          "energy_for_steps_j": split.passes[name] * split.steps}
                   for name in PASSES},
        "modules": [{"module": m.label, "count": m.count, "forward_j": m.forward_j,
                     "backward_j": m.backward_j, "optimizer_j": m.optimizer_j,
                     "total_j": m.total_j, "share_of_step": m.share_of_step}
                    for m in split.modules[:top]],
    }


def render_training(split: TrainingSplit, console: Console, top: int = 10) -> None:
    """Print the per-step and per-run totals, the pass split and the top modules."""
    tree = split.tree
    head = Text()
    head.append("Training step", style="bold")
    head.append(f" ({tree.key.optimizer or 'optimiser'}): ")
    head.append(energy_text(split.total_j), style="bold")
    head.append(" per step")
    if split.steps > 1:
        head.append(f"  ·  {split.steps} steps: ")
        head.append(energy_text(split.total_run_j), style="bold")
    console.print(head)
    passes = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Forward / backward / optimiser",
                   title_justify="left", title_style="bold")
    for title in ("pass", "energy / step", "% step", "% FLOPs") + (
            (f"{split.steps} steps",) if split.steps > 1 else ()):
        passes.add_column(title, justify="left" if title == "pass" else "right", no_wrap=True)
    for name in PASSES:
        cells = [name, format_energy(split.passes[name]), format_percent(split.shares[name]),
                 format_percent(split.flop_shares[name])]
        if split.steps > 1:
            cells.append(format_energy(split.passes[name] * split.steps))
        passes.add_row(*cells)
    console.print(passes)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                  title=f"Top {min(top, len(split.modules))} modules over the three passes",
                  title_justify="left", title_style="bold",
                  caption="* stands for every layer index: repeated layers are summed",
                  caption_justify="left")
    for title in ("module", "×", "forward", "backward", "optimiser", "total", "% step"):
        table.add_column(title, justify="left" if title == "module" else "right",
                         no_wrap=title != "module", overflow="fold")
    for m in split.modules[:top]:
        table.add_row(m.label, str(m.count), format_energy(m.forward_j),
                      format_energy(m.backward_j), format_energy(m.optimizer_j),
                      format_energy(m.total_j), format_percent(m.share_of_step))
    console.print(table)


def training_section(trees: Sequence[Tree], *, top: int = 10) -> str:
    """Static HTML: the pass split and top modules of every training-step tree among ``trees``
    (empty string when there is none)."""
    cards = []
    for tree in trees:
        if not is_training_step(tree):
            continue
        try:
            split = training_split(tree)
        except ValueError:
            continue
        rows = "".join(
            f"<tr><td>{name}</td><td class=num>{format_energy(split.passes[name])}</td>"
            f"<td class=num>{format_percent(split.shares[name])}</td>"
            f"<td class=num>{format_percent(split.flop_shares[name])}</td></tr>"
            for name in PASSES)
        modules = "".join(
            f"<tr><td>{html.escape(m.label)}</td><td class=num>{m.count}</td>"
            f"<td class=num>{format_energy(m.forward_j)}</td>"
            f"<td class=num>{format_energy(m.backward_j)}</td>"
            f"<td class=num>{format_energy(m.optimizer_j)}</td>"
            f"<td class=num>{format_energy(m.total_j)}</td>"
            f"<td class=num>{format_percent(m.share_of_step)}</td></tr>"
            for m in split.modules[:top])
        cards.append(
            f"<div class=card><h3>{html.escape(tree.label)} · "
            f"{html.escape(str(tree.key.optimizer or ''))}: {format_energy(split.total_j)} "
            f"per step ({split.source})</h3><table class=data><thead><tr><th>pass</th>"
            "<th>energy / step</th><th>% step</th><th>% FLOPs</th></tr></thead>"
            f"<tbody>{rows}</tbody></table><table class=data><thead><tr><th>module</th>"
            "<th>×</th><th>forward</th><th>backward</th><th>optimiser</th><th>total</th>"
            f"<th>% step</th></tr></thead><tbody>{modules}</tbody></table></div>")
    if not cards:
        return ""
    return ("<section id=training><h2>Training steps: forward / backward / optimiser</h2>"
            "<p class=hint>Energy per training step; a module's row sums its forward, backward "
            "and optimiser nodes (* stands for every layer index).</p>"
            + "".join(cards) + "</section>")
