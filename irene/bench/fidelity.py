"""How faithfully a variant reproduces the reference's outputs on the same inputs.

A variant (another engine, precision, quantisation, pruning) should compute the same function
as the reference: PyTorch eager in float32. With random weights task accuracy means nothing, so
the variant's logits are compared with the reference's logits on fixed inputs:

* ``top1_agreement``: fraction of positions (batch x sequence) whose most likely token is the
  same (1.0 = every position agrees);
* ``max_abs_logit_diff`` / ``mean_abs_logit_diff``: largest and mean absolute difference of the
  logits over every position and vocabulary entry (logit units);
* ``kl_divergence``: KL(reference || variant) of the softmax distributions in nats, averaged
  over positions (0 = identical distributions).

All are computed in float64 on the CPU, whatever the variant's dtype and device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Fidelity:
    """Agreement of a variant's logits with the reference's (see the module docstring)."""

    top1_agreement: float
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    kl_divergence: float
    positions: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def as_logits(output: torch.Tensor, reference_shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """``output`` as a float64 CPU tensor of ``reference_shape`` (ValueError if it cannot be)."""
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"a variant must return a logits tensor, got {type(output).__name__}")
    if tuple(output.shape) != tuple(reference_shape):
        raise ValueError(f"logits of shape {tuple(output.shape)}, expected "
                         f"{tuple(reference_shape)} like the reference")
    return output.detach().to(device="cpu", dtype=torch.float64)


def compare_logits(reference: torch.Tensor, variant: torch.Tensor) -> Fidelity:
    """Fidelity of ``variant``'s logits to ``reference``'s; both (..., vocabulary).

    Non-finite logits in the variant (an fp16 overflow, say) give infinite differences and a
    top-1 agreement counted on the positions' argmax as torch computes it.
    """
    ref = as_logits(reference, reference.shape)
    var = as_logits(variant, reference.shape)
    vocab = ref.shape[-1]
    ref = ref.reshape(-1, vocab)
    var = var.reshape(-1, vocab)
    diff = (var - ref).abs()
    agreement = (ref.argmax(-1) == var.argmax(-1)).double().mean()
    log_p = torch.log_softmax(ref, dim=-1)
    log_q = torch.log_softmax(var, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    return Fidelity(top1_agreement=float(agreement), max_abs_logit_diff=float(diff.max()),
                    mean_abs_logit_diff=float(diff.mean()),
                    kl_divergence=max(float(kl), 0.0), positions=int(ref.shape[0]))
