"""I-JEPA's and iBOT's losses against references written from their papers' formulas with plain
numpy loops; their masks' geometry."""

import math

import numpy as np
import pytest
import torch

from selfsup import losses
from selfsup.methods.ibot import blockwise_masks
from selfsup.methods.ijepa import IJEPAParams, block_size, multiblock_masks

rng = np.random.default_rng(0)


def t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def ijepa_reference(pred, target):
    """1/(number of tokens) Σ_tokens ‖ŝ − LN(s)‖², LN over the features without affine, eps 1e-5."""
    total, tokens = 0.0, 0
    for index in np.ndindex(*pred.shape[:-1]):
        s = target[index]
        normalised = (s - s.mean()) / np.sqrt(s.var() + 1e-5)
        total += sum((pred[index][d] - normalised[d]) ** 2 for d in range(len(s)))
        tokens += 1
    return total / tokens


def ibot_patch_reference(student, teacher, mask, center, student_temp, teacher_temp):
    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    per_image = []
    for n in range(student.shape[0]):
        total, masked = 0.0, 0
        for i in range(student.shape[1]):
            if mask[n, i]:
                p_t = softmax((teacher[n, i] - center) / teacher_temp)
                log_p_s = np.log(softmax(student[n, i] / student_temp))
                total += -(p_t * log_p_s).sum()
                masked += 1
        per_image.append(total / max(masked, 1))
    return np.mean(per_image)


def test_ijepa_loss_matches_the_paper():
    pred, target = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5)) * 2 + 1
    assert losses.ijepa_loss(t(pred), t(target)).item() == pytest.approx(
        ijepa_reference(pred, target), rel=1e-5
    )
    assert torch.autograd.gradcheck(lambda p: losses.ijepa_loss(p, t(target)), (t(pred),))
    # without the layer norm: the plain mean squared L2 distance per token
    plain = losses.ijepa_loss(t(pred), t(target), normalize=False).item()
    assert plain == pytest.approx(((pred - target) ** 2).sum(-1).mean(), rel=1e-5)


def test_ibot_patch_loss_matches_the_paper():
    student, teacher = rng.normal(size=(3, 5, 6)), rng.normal(size=(3, 5, 6))
    mask = rng.random((3, 5)) < 0.5
    mask[2] = False  # an image with no masked patch counts as 0
    mask[0, 0] = True
    center = rng.normal(size=6) * 0.1
    expected = ibot_patch_reference(student, teacher, mask, center, 0.1, 0.07)
    loss = losses.ibot_patch_loss(t(student), t(teacher), torch.tensor(mask), t(center), 0.1, 0.07)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert torch.autograd.gradcheck(
        lambda s: losses.ibot_patch_loss(s, t(teacher), torch.tensor(mask), t(center), 0.1, 0.07),
        (t(student),),
    )


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="same shape"):
        losses.ijepa_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="N×L×K"):
        losses.ibot_patch_loss(torch.zeros(2, 3, 4), torch.zeros(2, 4, 4), torch.ones(2, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="one flag per patch"):
        losses.ibot_patch_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(2, 4), torch.zeros(4))


def test_ijepa_blocks_have_the_papers_scale_and_aspect_and_the_context_avoids_the_targets():
    params = IJEPAParams()
    for u in (0.0, 0.5, 0.999):
        h, w = block_size(u, params.target_scale, params.target_aspect, 16)
        assert 0.15 * 256 * 0.75 <= h * w <= 0.2 * 256 * 1.25  # the rounding of a side moves it a little
        assert 0.75 / 1.4 <= h / w <= 1.5 * 1.4
        ch, cw = block_size(u, params.context_scale, (1.0, 1.0), 16)
        assert ch == cw == 15  # 0.85-1 of 16×16 rounds to 15-16 a side, one less than the grid at most
    generator = torch.Generator().manual_seed(0)
    context, targets = multiblock_masks(64, 16, params, generator)
    n, m, size = targets.shape
    assert m == 4 and context.shape[0] == n == 64 and context.shape[1] >= params.min_context
    for i in range(n):
        cells = set(context[i].tolist())
        assert len(cells) == context.shape[1]
        for block in targets[i]:
            rows, cols = block // 16, block % 16
            area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert area == size == len(set(block.tolist()))  # a full rectangle
            assert not cells & set(block.tolist())  # the context holds no target patch
    # the same generator state gives the same masks
    again = multiblock_masks(64, 16, params, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], context) and torch.equal(again[1], targets)


def test_ibot_blockwise_masks_hide_about_the_ratio_in_blocks():
    generator = torch.Generator().manual_seed(0)
    for grid, ratio in ((14, 0.3), (14, 0.1), (4, 0.3)):
        masks = blockwise_masks(torch.full((500,), ratio), grid, generator=generator)
        share = masks.float().sum(dim=1) / grid**2
        assert (share <= ratio + 1e-6).all()  # never more than the ratio's patches
        assert share.mean().item() == pytest.approx(ratio, abs=0.3 / math.sqrt(grid**2) + 0.02)
    assert not blockwise_masks(torch.zeros(5), 14, generator=generator).any()
    # blocks: a masked patch has a masked neighbour far more often than random patches would
    masks = blockwise_masks(torch.full((200,), 0.3), 14, generator=generator).view(200, 14, 14)
    right = (masks[:, :, 1:] & masks[:, :, :-1]).sum() / masks[:, :, :-1].sum()
    assert right > 0.6
