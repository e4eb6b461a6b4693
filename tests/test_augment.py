import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from selfsup.augment import AugmentConfig, ViewAugmenter, ops


@pytest.fixture
def images():
    return torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "ours,theirs,low,high",
    [
        (ops.adjust_brightness, TF.adjust_brightness, 0.0, 2.0),
        (ops.adjust_contrast, TF.adjust_contrast, 0.0, 2.0),
        (ops.adjust_saturation, TF.adjust_saturation, 0.0, 2.0),
        (ops.adjust_hue, TF.adjust_hue, -0.5, 0.5),
    ],
)
def test_colour_operations_equal_torchvision(images, ours, theirs, low, high):
    factors = low + (high - low) * torch.rand(len(images), generator=torch.Generator().manual_seed(1))
    expected = torch.stack([theirs(img, float(f)) for img, f in zip(images, factors)])
    assert torch.allclose(ours(images, factors), expected, atol=1e-3)


def test_hue_equals_torchvision_on_ties_greys_and_pure_colours():
    """Quantised pixels: many channels tie for the maximum (red wins, then green), greys and
    pure primaries — the cases where the sector choice of RGB -> HSV matters."""
    generator = torch.Generator().manual_seed(7)
    images = torch.randint(0, 4, (16, 3, 8, 8), generator=generator).float() / 3
    shifts = torch.rand(16, generator=generator) - 0.5
    expected = torch.stack([TF.adjust_hue(img, float(s)) for img, s in zip(images, shifts)])
    assert torch.allclose(ops.adjust_hue(images, shifts), expected, atol=1e-5)


@pytest.mark.parametrize("strengths", [(0.4, 0.4, 0.4, 0.1), (0.8, 0.0, 0.8, 0.2)])
def test_colour_jitter_equals_torchvision_in_each_images_order(images, strengths):
    """The batched jitter (one pass per position for brightness/contrast/saturation, hue on the
    images whose turn it is) = torchvision's functional operations one image at a time, in that
    image's drawn order, on the images its coin selected; strength 0 skips the operation."""
    draw = ops.draw_jitter(
        len(images), *strengths, p=0.7, generator=torch.Generator().manual_seed(8), device="cpu"
    )
    out = ops.apply_jitter(images.clone(), draw, strengths)
    functions = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i, img in enumerate(images):
        expected = img
        if draw.apply[i]:
            for op in draw.order[i].tolist():
                if strengths[op]:
                    expected = functions[op](expected, float(draw.factors[i, op]))
        assert torch.allclose(out[i], expected, atol=1e-5), i
    assert 0 < int(draw.apply.sum()) < len(images)


def test_views_made_together_equal_views_made_one_at_a_time():
    """All views of one size are transformed as one batch; the draws come in view order, so the
    result is the same as making each view alone from the same generator."""
    from selfsup.config import preset_config

    images = torch.randint(
        0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(9)
    )
    augmenter = ViewAugmenter(preset_config("dino"))  # 2 global views (blur, solarise per view) + 8 local
    together = augmenter(images, torch.Generator().manual_seed(10))
    generator = torch.Generator().manual_seed(10)
    alone = [augmenter.view(images, generator, index=i) for i in range(2)] + [
        augmenter.view(images, generator, local=True) for _ in range(8)
    ]
    assert [v.shape for v in together] == [v.shape for v in alone]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(together, alone))


def test_grayscale_equals_torchvision(images):
    apply = torch.tensor([True, False] * 6)
    out = ops.to_grayscale(images, apply)
    expected = TF.rgb_to_grayscale(images, num_output_channels=3)
    assert torch.allclose(out[apply], expected[apply], atol=1e-5)
    assert torch.equal(out[~apply], images[~apply])


def test_crop_resize_flip_equals_resized_crop_then_flip(images):
    generator = torch.Generator().manual_seed(3)
    boxes = ops.random_resized_crop_boxes(len(images), 16, 16, (0.08, 1.0), (3 / 4, 4 / 3), generator, "cpu")
    flip = torch.rand(len(images), generator=generator) < 0.5
    out = ops.crop_resize_flip(images, boxes, flip, (16, 16))
    for i, img in enumerate(images):
        top, left, h, w = (int(v) for v in boxes[i])
        expected = TF.resized_crop(img, top, left, h, w, [16, 16], antialias=False)
        if flip[i]:
            expected = expected.flip(-1)
        assert torch.allclose(out[i], expected, atol=1e-5)


def test_crop_boxes_follow_the_requested_distributions():
    """Areas are uniform in scale × image area and log aspect ratios uniform, as in torchvision."""
    n, side = 20000, 64
    boxes = ops.random_resized_crop_boxes(
        n, side, side, (0.2, 0.8), (3 / 4, 4 / 3), torch.Generator().manual_seed(4), "cpu"
    )
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= side).all() and (left + w <= side).all()
    share = h * w / side**2
    # uniform on (0.2, 0.8): mean 0.5, std 0.6/sqrt(12); integer rounding widens it slightly
    assert share.mean().item() == pytest.approx(0.5, abs=0.01)
    assert share.std().item() == pytest.approx(0.6 / math.sqrt(12), rel=0.05)
    log_ratio = torch.log(w / h)
    assert log_ratio.mean().item() == pytest.approx(0.0, abs=0.01)
    assert log_ratio.std().item() == pytest.approx(2 * math.log(4 / 3) / math.sqrt(12), rel=0.1)


def test_each_image_gets_its_own_parameters_and_seed_fixes_them():
    batch = torch.full((8, 3, 16, 16), 128, dtype=torch.uint8)
    batch[:, 0, :8] = 255
    augmenter = ViewAugmenter(AugmentConfig())
    views = augmenter(batch, torch.Generator().manual_seed(5))
    again = augmenter(batch, torch.Generator().manual_seed(5))
    assert len(views) == 2 and views[0].shape == (8, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(views, again))
    # identical inputs come out different: parameters are drawn per image
    assert not torch.allclose(views[0][0], views[0][1])
    assert 0.0 <= views[0].min() and views[0].max() <= 1.0


def test_colour_jitter_probability_is_respected(images):
    out = ops.color_jitter(images, 0.4, 0.4, 0.4, 0.1, p=0.0, generator=torch.Generator())
    assert torch.equal(out, images)
    changed = ops.color_jitter(images, 0.4, 0.4, 0.4, 0.1, p=1.0, generator=torch.Generator().manual_seed(6))
    assert all(not torch.allclose(a, b) for a, b in zip(changed, images))


def test_grey_images_pass_through_colour_operations():
    grey = torch.rand(4, 1, 8, 8)
    factors = torch.full((4,), 0.3)
    assert torch.equal(ops.adjust_saturation(grey, factors), grey)
    assert torch.equal(ops.adjust_hue(grey, factors), grey)
    views = ViewAugmenter(AugmentConfig())((grey * 255).to(torch.uint8), torch.Generator().manual_seed(0))
    assert views[0].shape == (4, 1, 8, 8)


def test_multi_crop_adds_local_views_of_the_local_size():
    from selfsup.augment import AugmentConfig, ViewAugmenter

    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    config = AugmentConfig(views=2, local_views=3)
    views = ViewAugmenter(config)(images, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(5, 3, 32, 32)] * 2 + [(5, 3, 14, 14)] * 3  # 96/224 of 32
    sized = ViewAugmenter(AugmentConfig(local_views=1, local_size=4))(
        images, torch.Generator().manual_seed(0)
    )
    assert sized[-1].shape[-2:] == (4, 4)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_gaussian_blur_equals_torchvision_per_image(images, kernel_size):
    sigma = 0.1 + 1.9 * torch.rand(len(images), generator=torch.Generator().manual_seed(2))
    out = ops.gaussian_blur(images, sigma, kernel_size)
    expected = torch.stack(
        [
            TF.gaussian_blur(img, [kernel_size, kernel_size], [float(s), float(s)])
            for img, s in zip(images, sigma)
        ]
    )
    assert torch.allclose(out, expected, atol=1e-5)


def test_solarize_equals_torchvision(images):
    assert torch.allclose(ops.solarize(images, 0.5), TF.solarize(images, 0.5), atol=1e-6)


def test_blur_kernel_is_a_tenth_of_the_side_and_odd():
    assert [ops.blur_kernel_size(s) for s in (8, 32, 96, 224)] == [3, 3, 9, 23]


def plain(**changes) -> AugmentConfig:
    """No crop, flip or colour change: only what ``changes`` switches on."""
    base = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
    return AugmentConfig(**{**base, **changes})


def test_blur_and_solarisation_are_per_view(images):
    uint8 = (images * 255).round().to(torch.uint8)
    x = uint8.float() / 255
    config = plain(views=3, blur_p=[1.0, 0.0], solarize_p=[0.0, 1.0])
    first, second, third = ViewAugmenter(config)(uint8, torch.Generator().manual_seed(0))
    assert not torch.allclose(first, x, atol=1e-3) and first.std() < x.std()  # blurred, not solarised
    assert torch.allclose(second, TF.solarize(x, 0.5), atol=1e-5)  # solarised, not blurred
    assert torch.allclose(third, second, atol=1e-5)  # later views repeat the last entry


def test_blur_probability_is_respected():
    images = torch.rand(400, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = ops.random_blur(images, 0.3, (0.5, 2.0), 3, torch.Generator().manual_seed(1))
    changed = (out - images).abs().flatten(1).amax(dim=1) > 1e-6
    assert 0.22 < changed.float().mean() < 0.38


def test_presets_set_the_papers_pipelines():
    from selfsup.config import preset_config
    from selfsup.methods.recipes import build_config

    byol = build_config("byol", small_images=False, overrides=["augment.preset=byol"]).augment
    assert byol.blur_p == [1.0, 0.1] and byol.solarize_p == [0.0, 0.2] and byol.preset == "byol"
    dino = build_config("dino", small_images=False, overrides=["augment.preset=dino"]).augment
    assert dino.local_views == 8 and dino.local_crop_scale == (0.05, 0.4) and dino.local_blur_p == 0.5
    mae = preset_config("mae")  # one view: for MAE, not for the two-view methods
    assert mae.views == 1 and mae.jitter_p == 0 and mae.crop_scale == (0.2, 1.0)
    # a later option overrides one parameter of the preset
    tuned = build_config(
        "simclr", small_images=False, overrides=["augment.preset=simclr", "augment.blur_p=0.2"]
    ).augment
    assert tuned.blur_p == [0.2] and tuned.brightness == 0.8


def test_every_recipe_names_a_preset():
    from pathlib import Path

    import yaml

    import selfsup

    for recipe in sorted((Path(selfsup.__file__).parent / "recipes").glob("*.yaml")):
        assert yaml.safe_load(recipe.read_text())["augment"]["preset"], recipe.name
