"""PowerGrad (Das et al., "Altering backward pass gradients improves convergence") against its
formula written out by hand: forward = mean cross-entropy, backward = (p^α/Σp^α − onehot)/b."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoorank.errors import InvalidInputError
from zoorank.groundtruth.powergrad import make_loss, powergrad_cross_entropy


def _batch(seed: int = 0, b: int = 6, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(b, k, generator=g, dtype=torch.float64)
    labels = torch.randint(0, k, (b,), generator=g)
    return logits, labels


def _hand_gradient(logits: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    """(p' − onehot(y)) / b with p = exp(z)/Σexp(z) and p' = p^α / Σ p^α, literally."""
    p = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    powered = p**alpha
    tempered = powered / powered.sum(dim=1, keepdim=True)
    onehot = torch.zeros_like(p)
    onehot[torch.arange(len(labels)), labels] = 1.0
    return (tempered - onehot) / logits.shape[0]


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9])
def test_gradient_is_tempered_softmax_minus_onehot(alpha: float) -> None:
    logits, labels = _batch()
    z = logits.clone().requires_grad_(True)
    powergrad_cross_entropy(z, labels, alpha=alpha).backward()
    torch.testing.assert_close(z.grad, _hand_gradient(logits, labels, alpha), rtol=1e-12, atol=1e-14)


def test_gradient_scales_with_upstream_gradient() -> None:
    logits, labels = _batch(1)
    z = logits.clone().requires_grad_(True)
    (3.0 * powergrad_cross_entropy(z, labels, alpha=0.25)).backward()
    torch.testing.assert_close(z.grad, 3.0 * _hand_gradient(logits, labels, 0.25))


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.25])
def test_forward_value_is_cross_entropy_for_any_alpha(alpha: float) -> None:
    logits, labels = _batch(2)
    value = powergrad_cross_entropy(logits, labels, alpha=alpha)
    assert torch.equal(value, F.cross_entropy(logits, labels))


def test_alpha_one_is_cross_entropy_value_and_gradient() -> None:
    logits, labels = _batch(3)
    z1 = logits.clone().requires_grad_(True)
    z2 = logits.clone().requires_grad_(True)
    v1 = powergrad_cross_entropy(z1, labels, alpha=1.0)
    v2 = F.cross_entropy(z2, labels)
    v1.backward()
    v2.backward()
    assert torch.equal(v1, v2)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=0.0, atol=1e-16)


def test_two_class_example_by_hand() -> None:
    # z = (2, 0), y = 0, α = 0.5: p' = softmax(1, 0) = (e/(e+1), 1/(e+1)).
    z = torch.tensor([[2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    powergrad_cross_entropy(z, torch.tensor([0]), alpha=0.5).backward()
    e = torch.e
    expected = torch.tensor([[e / (e + 1) - 1.0, 1 / (e + 1)]], dtype=torch.float64)
    torch.testing.assert_close(z.grad, expected)


def test_confident_logits_do_not_underflow() -> None:
    z = torch.tensor([[800.0, 0.0, -800.0]], dtype=torch.float32, requires_grad=True)
    powergrad_cross_entropy(z, torch.tensor([1]), alpha=0.25).backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("alpha", [0.0, -0.5, 1.5, float("nan")])
def test_refuses_alpha_outside_unit_interval(alpha: float) -> None:
    logits, labels = _batch()
    with pytest.raises(InvalidInputError, match="alpha"):
        powergrad_cross_entropy(logits, labels, alpha=alpha)


def test_refuses_bad_shapes_and_unknown_loss() -> None:
    with pytest.raises(InvalidInputError, match="logits must be"):
        powergrad_cross_entropy(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="loss must be"):
        make_loss("focal")
    assert make_loss("ce") is F.cross_entropy
