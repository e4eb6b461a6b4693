"""Each loss against a reference written straight from its paper's formula, with plain numpy loops."""

import numpy as np
import pytest
import torch

from selfsup import losses

rng = np.random.default_rng(0)


def t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def byol_reference(p, z):
    return np.mean([2 - 2 * cos(p[i], z[i]) for i in range(len(p))])


def simsiam_reference(p, z):
    return np.mean([-cos(p[i], z[i]) for i in range(len(p))])


def barlow_reference(z1, z2, lambd):
    n, d = z1.shape

    def standardise(z):
        out = np.empty_like(z)
        for j in range(d):
            column = z[:, j]
            out[:, j] = (column - column.mean()) / np.sqrt(((column - column.mean()) ** 2).mean() + 1e-5)
        return out

    a, b = standardise(z1), standardise(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambd * c**2
    return loss


def vicreg_reference(z1, z2, sim_weight, var_weight, cov_weight):
    n, d = z1.shape
    invariance = np.mean((z1 - z2) ** 2)
    variance = covariance = 0.0
    for z in (z1, z2):
        mean = z.mean(axis=0)
        for j in range(d):
            var = sum((z[k, j] - mean[j]) ** 2 for k in range(n)) / (n - 1)
            variance += max(0.0, 1 - np.sqrt(var + 1e-4)) / d / 2
        for i in range(d):
            for j in range(d):
                if i != j:
                    cov = sum((z[k, i] - mean[i]) * (z[k, j] - mean[j]) for k in range(n)) / (n - 1)
                    covariance += cov**2 / d
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance


def margin_reference(x1, x2, same, margin):
    out = []
    for a, b, y in zip(x1, x2, same):
        d = np.linalg.norm(a - b)
        out.append(y * d**2 + (1 - y) * max(0.0, margin - d) ** 2)
    return np.mean(out)


def triplet_reference(anchor, positive, negative, margin):
    return np.mean(
        [
            max(
                0.0,
                np.linalg.norm(anchor[i] - positive[i]) - np.linalg.norm(anchor[i] - negative[i]) + margin,
            )
            for i in range(len(anchor))
        ]
    )


def moco_reference(q, k, queue, temperature):
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    out = []
    for qi, ki in zip(q, k):
        positive = np.exp(unit(qi) @ unit(ki) / temperature)
        negatives = sum(np.exp(unit(qi) @ unit(kn) / temperature) for kn in queue)
        out.append(-np.log(positive / (positive + negatives)))
    return np.mean(out)


def moco_v3_reference(q, k, temperature):
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    out = []
    for i, qi in enumerate(q):
        scores = [np.exp(unit(qi) @ unit(kj) / temperature) for kj in k]
        out.append(-np.log(scores[i] / sum(scores)))
    return 2 * temperature * np.mean(out)


def dino_reference(student, teacher, center, student_temp, teacher_temp):
    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    total, pairs = 0.0, 0
    for i in range(len(teacher)):
        for j in range(len(student)):
            if i == j:
                continue
            per_sample = [
                -(
                    softmax((teacher[i][b] - center) / teacher_temp)
                    * np.log(softmax(student[j][b] / student_temp))
                ).sum()
                for b in range(teacher.shape[1])
            ]
            total += np.mean(per_sample)
            pairs += 1
    return total / pairs


CASES = {
    "byol": lambda: (
        (rng.normal(size=(6, 5)), rng.normal(size=(6, 5))),
        {},
        losses.byol_loss,
        byol_reference,
    ),
    "simsiam": lambda: (
        (rng.normal(size=(6, 5)), rng.normal(size=(6, 5))),
        {},
        losses.simsiam_loss,
        simsiam_reference,
    ),
    "barlow": lambda: (
        (rng.normal(size=(7, 4)), rng.normal(size=(7, 4))),
        {"lambd": 0.0051},
        losses.barlow_twins_loss,
        barlow_reference,
    ),
    "vicreg": lambda: (
        (rng.normal(size=(7, 4)) * 0.5, rng.normal(size=(7, 4)) * 2),
        {"sim_weight": 25.0, "var_weight": 25.0, "cov_weight": 1.0},
        losses.vicreg_loss,
        vicreg_reference,
    ),
    "margin": lambda: (
        (rng.normal(size=(8, 3)), rng.normal(size=(8, 3)) * 0.3),
        {"same": np.array([1, 0] * 4), "margin": 2.0},
        losses.margin_contrastive_loss,
        margin_reference,
    ),
    "triplet": lambda: (
        (rng.normal(size=(8, 3)), rng.normal(size=(8, 3)), rng.normal(size=(8, 3))),
        {"margin": 1.0},
        losses.triplet_loss,
        triplet_reference,
    ),
    "moco": lambda: (
        (rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), rng.normal(size=(9, 4))),
        {"temperature": 0.2},
        losses.moco_loss,
        moco_reference,
    ),
    "moco_v3": lambda: (
        (rng.normal(size=(6, 4)), rng.normal(size=(6, 4))),
        {"temperature": 0.2},
        losses.moco_v3_loss,
        moco_v3_reference,
    ),
    "dino": lambda: (
        (rng.normal(size=(4, 3, 6)), rng.normal(size=(2, 3, 6)), rng.normal(size=6)),
        {"student_temp": 0.1, "teacher_temp": 0.04},
        losses.dino_loss,
        dino_reference,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_loss_matches_the_paper_formula(name):
    arrays, kwargs, function, reference = CASES[name]()
    tensors = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    value = function(*[t(a) for a in arrays], **tensors)
    assert value.item() == pytest.approx(reference(*arrays, **kwargs), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_loss_gradient_matches_finite_differences(name):
    arrays, kwargs, function, _ = CASES[name]()
    differentiable = arrays[:-1] if name == "dino" else arrays  # DINO's center is a buffer, not a parameter
    fixed = arrays[-1:] if name == "dino" else ()
    extra = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}

    def f(*inputs):
        return function(*inputs, *[torch.tensor(a) for a in fixed], **extra)

    inputs = tuple(t(a) for a in differentiable)
    if (
        name == "dino"
    ):  # the teacher distribution is detached by definition: check the student's gradient only
        teacher = inputs[1].detach()
        assert torch.autograd.gradcheck(lambda s: f(s, teacher), (inputs[0],))
    else:
        assert torch.autograd.gradcheck(f, inputs)


def test_half_precision_inputs_are_computed_in_float32():
    z1, z2 = torch.randn(8, 4).bfloat16(), torch.randn(8, 4).bfloat16()
    for loss in (losses.nt_xent_loss(z1, z2), losses.barlow_twins_loss(z1, z2), losses.vicreg_loss(z1, z2)):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
