"""Small numerical tools the predictors share: one-thread torch, a full-batch Adam (on numpy
arrays or torch tensors), and least-squares fits in relative error. torch is imported only by
the helpers that use it, so a predictor written in numpy never loads it."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: the tensors here are small, and on a busy machine torch's
    thread pool costs far more in waiting than it gains (measured: 10x slower on 2 cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Adam:
    """Adam (Kingma & Ba, 2015) on a few full-batch parameter arrays: numpy arrays, updated in
    place, or torch tensors (updated in place without recording gradients).

    Written out because ``torch.optim`` imports ``torch._dynamo`` on its first step, which costs
    seconds — more than a whole training run here — and so that numpy predictors need no torch.
    """

    def __init__(self, params: list[Any], lr: float, betas=(0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [_zeros_like(p) for p in params]
        self.v = [_zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: Sequence[Any]) -> None:
        """One update of every parameter from its gradient (same type and shape)."""
        self.t += 1
        b1, b2 = self.betas
        correction1, correction2 = 1 - b1**self.t, 1 - b2**self.t
        with _no_grad(self.params):
            for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * (g * g)
                denom = (v / correction2) ** 0.5 + self.eps
                p -= (self.lr / correction1) * (m / denom)


def _zeros_like(p: Any) -> Any:
    return np.zeros_like(p) if isinstance(p, np.ndarray) else p.new_zeros(p.shape)


def _no_grad(params: list[Any]) -> contextlib.AbstractContextManager:
    if all(isinstance(p, np.ndarray) for p in params):
        return contextlib.nullcontext()
    import torch

    return torch.no_grad()


def weighted_lstsq(a: np.ndarray, y: np.ndarray, weight: np.ndarray, ridge: float) -> np.ndarray:
    """argmin_θ Σ weight·(aθ - y)² + ridge·|θ[:-1]|² (the last column is the unpenalised bias)."""
    sw = np.sqrt(weight)[:, None]
    aw, yw = a * sw, y * sw[:, 0]
    penalty = np.sqrt(ridge * len(y)) * np.eye(a.shape[1])[:-1]
    a_full = np.vstack([aw, penalty])
    y_full = np.concatenate([yw, np.zeros(a.shape[1] - 1)])
    theta, *_ = np.linalg.lstsq(a_full, y_full, rcond=None)
    return theta


def relative_lstsq(a: np.ndarray, gold: np.ndarray, target: np.ndarray | None = None,
                   ridge: float = 0.0) -> np.ndarray:
    """argmin_θ Σ ((aθ − target) / gold)² + ridge·n·|θ|² (target defaults to gold), [F]."""
    target = gold if target is None else target
    aw = a / gold[:, None]
    yw = target / gold
    if ridge > 0:
        aw = np.vstack([aw, math.sqrt(ridge * len(gold)) * np.eye(a.shape[1])])
        yw = np.concatenate([yw, np.zeros(a.shape[1])])
    theta, *_ = np.linalg.lstsq(aw, yw, rcond=None)
    return theta


def relative_nnls(a: np.ndarray, gold: np.ndarray, target: np.ndarray,
                  iterations: int = 500) -> np.ndarray:
    """argmin_{θ ≥ 0} Σ ((aθ − target) / gold)² (Lawson–Hanson active set), [F]."""
    aw, yw = a / gold[:, None], target / gold
    n = aw.shape[1]
    theta, passive = np.zeros(n), np.zeros(n, dtype=bool)
    grad = aw.T @ (yw - aw @ theta)
    tol = 1e-12 * max(1.0, float(np.abs(grad).max(initial=0.0)))
    for _ in range(iterations):
        if passive.all() or grad[~passive].max(initial=-np.inf) <= tol:
            break
        passive[np.argmax(np.where(passive, -np.inf, grad))] = True
        while True:
            z = np.zeros(n)
            z[passive], *_ = np.linalg.lstsq(aw[:, passive], yw, rcond=None)
            if (z[passive] > 0).all():
                theta = z
                break
            blocking = passive & (z <= 0)
            step = np.min(theta[blocking] / (theta[blocking] - z[blocking]))
            theta = theta + step * (z - theta)
            passive &= theta > 1e-15
            theta[~passive] = 0.0
        grad = aw.T @ (yw - aw @ theta)
    return theta


def rms_scale(x: np.ndarray) -> np.ndarray:
    """Root mean square of each column (1 where a column is all zeros)."""
    scale = np.sqrt(np.mean(x**2, axis=0))
    return np.where(scale > 0, scale, 1.0)


def levenberg_marquardt(residual: Callable[[np.ndarray], np.ndarray], p0: np.ndarray,
                        iterations: int = 200) -> np.ndarray:
    """Minimise Σ residual(p)² from p0 with a forward-difference Jacobian (a few parameters)."""
    p, damping = p0.astype(float).copy(), 1e-3
    r = residual(p)
    cost = float(r @ r)
    for _ in range(iterations):
        step = 1e-6 * np.maximum(np.abs(p), 1e-3)
        jac = np.stack([(residual(p + np.eye(len(p))[i] * step[i]) - r) / step[i]
                        for i in range(len(p))], axis=1)
        jtj, jtr = jac.T @ jac, jac.T @ r
        improved = False
        for _ in range(10):
            delta = np.linalg.solve(jtj + damping * np.diag(np.diag(jtj) + 1e-12), -jtr)
            r_new = residual(p + delta)
            cost_new = float(r_new @ r_new)
            if np.isfinite(cost_new) and cost_new < cost:
                p, r, improved = p + delta, r_new, True
                damping = max(damping / 3, 1e-9)
                if cost - cost_new < 1e-10 * cost:
                    return p
                cost = cost_new
                break
            damping *= 10
        if not improved:
            break
    return p
