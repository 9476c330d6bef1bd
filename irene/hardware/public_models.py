"""Architecture facts of the checkpoints in the public measurements (ML.ENERGY v1 and v2).

The facts live in ``datasets/architectures/architectures.csv`` (one row per model id, each with
its source); this module reads them and counts what a hardware model needs: total parameters,
parameters used per decoded token, and KV-cache bytes per token of context. It imports neither
torch nor transformers.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from irene.checks import InputError

ARCHITECTURES_CSV = Path(__file__).resolve().parents[2] / "datasets" / "architectures" / \
    "architectures.csv"
KINDS = ("decoder", "encoder-decoder", "rnn")
MLPS = ("gated", "plain", "rwkv")
INT_FIELDS = ("layers", "encoder_layers", "hidden", "heads", "kv_heads", "head_dim",
              "intermediate", "vocab", "experts", "experts_per_token")
#: bytes of one KV-cache element: the 16-bit activation dtype all these runs used
KV_ELEMENT_BYTES = 2


class FactsError(InputError):
    """The facts table is malformed: the message names the file, line and field."""


@dataclass(frozen=True)
class ModelFacts:
    """One checkpoint's architecture (counts in units, not billions)."""

    model_id: str
    kind: str
    layers: int  # decoder layers (or RNN blocks)
    encoder_layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # per expert for MoE
    mlp: str
    vocab: int
    tied_embeddings: bool
    experts: int
    experts_per_token: int
    nominal_params_b: float
    source: str

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    def _attention(self) -> int:
        if self.mlp == "rwkv":  # time mixing: receptance, key, value, output (d x d each)
            return 4 * self.hidden * self.hidden
        q_and_o = 2 * self.hidden * self.heads * self.head_dim
        return q_and_o + 2 * self.hidden * self.kv_heads * self.head_dim

    def _mlp(self) -> int:
        d, f = self.hidden, self.intermediate
        return {"gated": 3 * d * f, "plain": 2 * d * f, "rwkv": 2 * d * f + d * d}[self.mlp]

    def _embeddings(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def _decoder_attention(self) -> int:
        cross = self._attention() if self.kind == "encoder-decoder" else 0
        return self._attention() + cross

    def total_params(self) -> int:
        """All weights (norms and biases ignored: < 0.1 %)."""
        router = self.hidden * self.experts if self.is_moe else 0
        decoder = self.layers * (self._decoder_attention() + self.experts * self._mlp() + router)
        encoder = self.encoder_layers * (self._attention() + self._mlp())
        return decoder + encoder + self._embeddings()

    def active_params(self) -> int:
        """Weights used per decoded token: the decoder with ``experts_per_token`` experts, the
        embeddings and the output head (an encoder runs once per prompt, not per token)."""
        router = self.hidden * self.experts if self.is_moe else 0
        per_layer = self._decoder_attention() + self.experts_per_token * self._mlp() + router
        return self.layers * per_layer + self._embeddings()

    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes of one context token of one sequence, all decoder layers (0 for an
        RNN, whose state does not grow)."""
        if self.kind == "rnn":
            return 0
        return 2 * self.layers * self.kv_heads * self.head_dim * KV_ELEMENT_BYTES


def _row_facts(row: dict[str, str], where: str) -> ModelFacts:
    values: dict[str, object] = {}
    for name in INT_FIELDS:
        try:
            values[name] = int(row[name])
        except (KeyError, TypeError, ValueError):
            raise FactsError(f"{where}: {name}: expected an integer, got {row.get(name)!r}") \
                from None
        if values[name] < 0:
            raise FactsError(f"{where}: {name}: expected >= 0, got {row[name]!r}")
    if row.get("kind") not in KINDS:
        raise FactsError(f"{where}: kind: expected one of {', '.join(KINDS)}, got "
                         f"{row.get('kind')!r}")
    if row.get("mlp") not in MLPS:
        raise FactsError(f"{where}: mlp: expected one of {', '.join(MLPS)}, got {row.get('mlp')!r}")
    if row.get("tied_embeddings") not in ("true", "false"):
        raise FactsError(f"{where}: tied_embeddings: expected true or false, got "
                         f"{row.get('tied_embeddings')!r}")
    try:
        nominal = float(row["nominal_params_b"])
    except (KeyError, TypeError, ValueError):
        raise FactsError(f"{where}: nominal_params_b: expected a number, got "
                         f"{row.get('nominal_params_b')!r}") from None
    if not row.get("model_id") or not row.get("source"):
        raise FactsError(f"{where}: model_id and source must not be empty")
    if values["layers"] < 1 or values["hidden"] < 1 or values["experts_per_token"] < 1 \
            or values["experts"] < values["experts_per_token"]:
        raise FactsError(f"{where}: layers, hidden, experts_per_token must be >= 1 and experts "
                         ">= experts_per_token")
    return ModelFacts(model_id=row["model_id"], kind=row["kind"], mlp=row["mlp"],
                      tied_embeddings=row["tied_embeddings"] == "true",
                      nominal_params_b=nominal, source=row["source"], **values)  # type: ignore[arg-type]


def load_facts(path: Path = ARCHITECTURES_CSV) -> dict[str, ModelFacts]:
    """The facts table by model id; ``FactsError`` names the file, line and field."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise FactsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    facts: dict[str, ModelFacts] = {}
    for line, row in enumerate(rows, start=2):
        item = _row_facts(row, f"{path}:{line}")
        if item.model_id in facts:
            raise FactsError(f"{path}:{line}: model_id: {item.model_id!r} listed twice")
        facts[item.model_id] = item
    return facts
