"""What one tree is of: a :class:`Workload` (phase, batch size, sequence and context length,
optimiser, dtype, attention, device) whose rules are checked here, once, for the command line,
campaign plans, the tracer and the estimates (a sweep is a list of workloads). A broken rule
raises :class:`WorkloadError` naming the field; each caller says where in its own terms
(``--context-len``; a plan's ``file:line: context_lens``). The host rules every tracer shares:
:func:`device_problem` (no such CUDA device here) and :func:`replay_problem` (a meter measures
the replays)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from irene.schema import OPTIMIZER_NAMES, PHASE_CODES

#: the workloads a tree can be, in the order the command line lists them
PHASES: tuple[str, ...] = tuple(PHASE_CODES)
#: phases that read and write a KV cache
CACHED_PHASES: tuple[str, ...] = ("prefill", "decode")


class WorkloadError(ValueError):
    """A workload that cannot be traced: ``field`` names the setting at fault, ``message`` says
    why; ``{phase}``-style placeholders in it are the other settings, spelt by the caller
    (:meth:`text`). ``str()`` spells them as the tracer's keywords."""

    def __init__(self, field: str, message: str, value: object = None) -> None:
        self.field, self.message, self.value = field, message, value
        super().__init__(self.text())

    def text(self, names: Mapping[str, str] | None = None, *, with_field: bool = True) -> str:
        """The error with every field spelt as ``names`` spells it (default: the keyword); with
        ``with_field`` the field at fault leads (``--optimizer sgd needs --phase train ...``),
        else only the reason (for a caller that says where itself, such as a plan's key)."""
        spelt = _Names(names or {})
        reason = self.message.format_map(spelt)
        value = "" if self.value is None else f" {self.value}"
        return f"{spelt[self.field]}{value} {reason}" if with_field else reason


class _Names(dict):
    """Field names as a caller spells them; a field it does not name keeps its own."""

    def __missing__(self, key: str) -> str:
        return key


def _escaped(value: object) -> str:
    return str(value).replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Workload:
    """One traced call: ``phase`` (forward, prefill, decode or train), ``batch_size`` sequences
    of ``seq_len`` new tokens after ``context_len`` cached ones, ``optimizer`` (a training step's;
    default the first of :data:`irene.schema.OPTIMIZER_NAMES`, None for the other phases), the
    ``dtype``, the attention implementation ``attn`` and the torch ``device``. Constructing one
    checks the rules (:class:`WorkloadError`)."""

    phase: str = "forward"
    batch_size: int = 1
    seq_len: int = 1
    context_len: int = 0
    optimizer: str | None = None
    dtype: str = "float32"
    attn: str = "eager"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise WorkloadError("phase", f"must be one of {', '.join(PHASES)}, got "
                                         f"{_escaped(repr(self.phase))}")
        self._check_optimizer()
        self._check_cache()
        if self.phase == "train" and self.optimizer is None:
            object.__setattr__(self, "optimizer", OPTIMIZER_NAMES[0])

    def _check_optimizer(self) -> None:
        if self.optimizer is None:
            return
        if self.phase != "train":
            raise WorkloadError("optimizer", f"needs {{phase}} train (a {self.phase} pass has "
                                             "no optimiser)", self.optimizer)
        if self.optimizer not in OPTIMIZER_NAMES:
            raise WorkloadError("optimizer", f"must be one of {', '.join(OPTIMIZER_NAMES)}, "
                                             f"got {_escaped(repr(self.optimizer))}")

    def _check_cache(self) -> None:
        if self.phase not in CACHED_PHASES and self.context_len:
            raise WorkloadError("context_len", f"needs {{phase}} prefill or decode (a "
                                               f"{self.phase} pass has no KV cache)",
                                self.context_len)
        if self.phase == "decode":
            if self.context_len < 1:
                raise WorkloadError("context_len", "must be >= 1 with {phase} decode: the "
                                                   "tokens already in the KV cache")
            if self.seq_len != 1:
                raise WorkloadError("seq_len", "must be 1: {phase} decode feeds one token per "
                                               "sequence (the cache length is {context_len})",
                                    self.seq_len)


def device_problem(device: str) -> str | None:
    """Why torch cannot run on ``device`` here (``"torch sees no CUDA device"``, or too few
    CUDA devices for ``cuda:N``); None when it can (cpu, meta, a CUDA device present)."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    index = device.partition(":")[2]
    if index.isdigit() and int(index) >= torch.cuda.device_count():
        return f"only {torch.cuda.device_count()} CUDA device(s) here"
    return None


def replay_problem(metered: bool, timing: bool) -> str | None:
    """Why a meter cannot be used without timing (it measures the nodes' replays, and a
    features-only trace has none), for the caller to add how to fix it; None when it can."""
    if metered and not timing:
        return "a meter needs the replays"
    return None
