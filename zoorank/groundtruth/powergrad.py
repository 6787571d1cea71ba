"""PowerGrad: cross-entropy whose backward pass uses a tempered softmax.

Paper: Das et al., "Altering backward pass gradients improves convergence" (softmax gradient
tampering, PowerGrad).

Formula. For logits ``z (b, k)``, labels ``y (b,)`` and ``p = softmax(z)``:

* forward (unchanged): ``L = -(1/b) Σ_i log p_{i, y_i}``, the mean cross-entropy;
* backward: ``p`` is replaced by ``p' = p^α / Σ_j p_j^α`` (α in (0, 1]), so
  ``∂L/∂z_i = (p'_i − onehot(y_i)) / b``.

Since ``p ∝ exp(z)``, ``p^α / Σ p^α = softmax(α z)``: ``p'`` is the softmax at temperature
``1/α``, which is how it is computed (no underflow for confident predictions). α = 1 is plain
cross-entropy, value and gradient. The reported loss value is always the cross-entropy, so
curves with different α are comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from zoorank.errors import InvalidInputError

LOSSES = ("ce", "powergrad")


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha <= 1.0:
        raise InvalidInputError(
            f"PowerGrad alpha must be in (0, 1], got {alpha}; 1 is plain cross-entropy, "
            "the paper uses e.g. 0.25",
            field="alpha",
        )
    return alpha


class PowerGradCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy forward; ``(softmax(α z) − onehot(y)) / b`` backward.

    ``apply(logits (b, k), labels (b,) int64, alpha float) -> scalar``. Only ``logits``
    receives a gradient.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(logits, labels)
        ctx.alpha = alpha
        return F.cross_entropy(logits, labels)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        logits, labels = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        tempered = torch.softmax(logits * ctx.alpha, dim=1)
        onehot = F.one_hot(labels, num_classes=logits.shape[1]).to(tempered.dtype)
        grad = (tempered - onehot) * (grad_output / logits.shape[0])
        return grad, None, None


def powergrad_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, *, alpha: float = 0.25
) -> torch.Tensor:
    """PowerGrad loss of ``logits (b, k)`` against integer ``labels (b,)``.

    Raises :class:`InvalidInputError` when ``alpha`` is outside (0, 1] or the shapes disagree.

    >>> z = torch.tensor([[2.0, 0.0]], requires_grad=True)
    >>> powergrad_cross_entropy(z, torch.tensor([0]), alpha=1.0).backward()
    >>> [round(v, 4) for v in z.grad[0].tolist()]  # softmax - onehot
    [-0.1192, 0.1192]
    """
    alpha = _check_alpha(alpha)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise InvalidInputError(
            f"logits must be (b, k) and labels (b,); got {tuple(logits.shape)} and {tuple(labels.shape)}",
            field="logits",
        )
    loss: torch.Tensor = PowerGradCrossEntropy.apply(logits, labels, alpha)
    return loss


def make_loss(loss: str, alpha: float = 0.25) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``ce`` -> ``F.cross_entropy``; ``powergrad`` -> PowerGrad with ``alpha``."""
    if loss == "ce":
        return F.cross_entropy
    if loss == "powergrad":
        alpha = _check_alpha(alpha)
        return lambda logits, labels: powergrad_cross_entropy(logits, labels, alpha=alpha)
    raise InvalidInputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}", field="loss")
