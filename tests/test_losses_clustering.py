"""SwAV's Sinkhorn-Knopp codes and swapped prediction, and NNCLR's nearest-neighbour loss, against
references written from the papers' formulas with numpy loops."""

import math

import numpy as np
import pytest
import torch

from selfsup import losses

rng = np.random.default_rng(0)


def sinkhorn_reference(scores, epsilon, iterations):
    """SwAV Sec. 3.1 / App. A.1: Q = exp(Cᵀz/ε) (K×B), then alternately diag(u) Q diag(v) so
    that the rows sum to 1/K and the columns to 1/B; codes = B·Qᵀ."""
    q = np.exp(scores.T / epsilon)
    q = q / q.sum()
    k, b = q.shape
    for _ in range(iterations):
        for row in range(k):
            q[row] = q[row] / q[row].sum() / k
        for col in range(b):
            q[:, col] = q[:, col] / q[:, col].sum() / b
    return (q * b).T


def swav_reference(scores, codes, temperature):
    views, n, _ = scores.shape
    total = 0.0
    for i in range(codes.shape[0]):
        sub = 0.0
        for v in range(views):
            if v == i:
                continue
            for row in range(n):
                x = scores[v, row] / temperature
                log_p = x - (np.log(np.sum(np.exp(x - x.max()))) + x.max())
                sub += -np.sum(codes[i, row] * log_p) / n
        total += sub / (views - 1)
    return total / codes.shape[0]


def nnclr_reference(neighbours, predictions, temperature):
    def unit(a):
        return a / np.linalg.norm(a)

    n = len(neighbours)
    total = 0.0
    for i in range(n):
        logits = [unit(neighbours[i]) @ unit(predictions[k]) / temperature for k in range(n)]
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    return total / n


@pytest.mark.parametrize("iterations", [1, 3, 100])
def test_sinkhorn_matches_the_paper_and_tends_to_equipartition(iterations):
    scores = rng.normal(size=(12, 5)) * 0.3
    codes = losses.sinkhorn_knopp(torch.tensor(scores), epsilon=0.05, iterations=iterations)
    np.testing.assert_allclose(
        codes.numpy(), sinkhorn_reference(scores, 0.05, iterations), rtol=1e-5, atol=1e-8
    )
    np.testing.assert_allclose(codes.sum(dim=1).numpy(), 1.0, rtol=1e-6)  # one unit per sample
    if iterations == 100:  # each prototype gets about B/K samples
        np.testing.assert_allclose(codes.sum(dim=0).numpy(), 12 / 5, rtol=1e-2)


def test_sinkhorn_is_stable_at_a_small_epsilon_and_in_half_precision():
    scores = torch.tensor([[1.0, -1.0], [0.9, -0.9], [-1.0, 1.0], [-0.8, 0.8]])
    codes = losses.sinkhorn_knopp(scores.bfloat16(), epsilon=0.01, iterations=3)
    assert codes.dtype == torch.float32 and torch.isfinite(codes).all()
    assert codes.argmax(dim=1).tolist() == [0, 0, 1, 1]


def test_swav_loss_matches_the_paper_and_its_gradient():
    scores = rng.normal(size=(4, 6, 5))
    codes = losses.sinkhorn_knopp(torch.tensor(scores[:2].reshape(-1, 5)), 0.05, 3).reshape(2, 6, 5).numpy()
    value = losses.swav_loss(torch.tensor(scores), torch.tensor(codes), temperature=0.1)
    assert value.item() == pytest.approx(swav_reference(scores, codes, 0.1), rel=1e-5)
    x = torch.tensor(scores, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: losses.swav_loss(s, torch.tensor(codes), 0.1), (x,))


def test_nnclr_picks_the_most_similar_support_row_and_matches_the_paper():
    support = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    z = torch.tensor([[0.1, 5.0], [-1.0, 0.2], [2.0, 0.1]])
    assert torch.equal(
        losses.nearest_neighbour(z, support), torch.tensor([[0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])
    )
    neighbours, predictions = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    value = losses.nnclr_loss(torch.tensor(neighbours), torch.tensor(predictions), 0.1)
    assert value.item() == pytest.approx(nnclr_reference(neighbours, predictions, 0.1), rel=1e-5)
    inputs = (torch.tensor(neighbours, requires_grad=True), torch.tensor(predictions, requires_grad=True))
    assert torch.autograd.gradcheck(lambda a, b: losses.nnclr_loss(a, b, 0.1), inputs)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: losses.sinkhorn_knopp(torch.zeros(3)), "B×K"),
        (lambda: losses.swav_loss(torch.zeros(2, 4, 3), torch.zeros(1, 4, 2)), "V×N×K"),
        (lambda: losses.swav_loss(torch.zeros(1, 4, 3), torch.zeros(1, 4, 3)), "2 in all"),
        (lambda: losses.nearest_neighbour(torch.zeros(4, 3), torch.zeros(5, 2)), "Q×D"),
        (lambda: losses.nnclr_loss(torch.zeros(4, 3), torch.zeros(5, 3)), "N×D"),
    ],
)
def test_bad_shapes_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
