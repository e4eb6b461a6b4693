import math

import pytest
import torch

from selfsup.losses import nt_xent_loss


def nt_xent_reference(z1, z2, temperature):
    """Eq. 1 of the SimCLR paper, written as loops over anchors."""
    z = torch.cat([z1, z2])
    n2 = len(z)
    n = n2 // 2
    u = [v / v.norm() for v in z]
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        numerator = math.exp(float(u[i] @ u[j]) / temperature)
        denominator = sum(math.exp(float(u[i] @ u[k]) / temperature) for k in range(n2) if k != i)
        total += -math.log(numerator / denominator)
    return total / n2


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_matches_the_paper_formula(temperature):
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    assert nt_xent_loss(z1, z2, temperature).item() == pytest.approx(
        nt_xent_reference(z1, z2, temperature), abs=1e-5
    )


def test_nt_xent_gradient_is_correct():
    torch.manual_seed(1)
    z1 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    # the loss computes in float32, so compare against finite differences loosely
    loss = nt_xent_loss(z1, z2, 0.5)
    loss.backward()
    eps = 1e-4
    for tensor in (z1, z2):
        for index in [(0, 0), (2, 1), (3, 2)]:
            with torch.no_grad():
                tensor[index] += eps
                up = nt_xent_reference(z1, z2, 0.5)
                tensor[index] -= 2 * eps
                down = nt_xent_reference(z1, z2, 0.5)
                tensor[index] += eps
            assert tensor.grad[index].item() == pytest.approx((up - down) / (2 * eps), abs=1e-4)


def test_nt_xent_is_low_for_aligned_views_and_high_for_shuffled_ones():
    torch.manual_seed(2)
    z = torch.randn(32, 16)
    aligned = nt_xent_loss(z, z + 0.01 * torch.randn_like(z), 0.1)
    shuffled = nt_xent_loss(z, z[torch.randperm(32)], 0.1)
    assert aligned < 0.1 < shuffled


def test_nt_xent_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="N×D"):
        nt_xent_loss(torch.randn(4, 3), torch.randn(5, 3))
