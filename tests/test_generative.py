"""Auto-regressive pixel models (causality, bits/dim, sampling), MAE (masking, loss) and the
denoising auto-encoder (corruptions), and what their runs leave behind."""

import json
import math

import pytest
import torch

from selfsup import api
from selfsup.augment import ops
from selfsup.errors import ConfigError
from selfsup.losses import bits_per_dim, masked_patch_loss
from selfsup.methods.autoregressive import PixelCNN, PixelParams, PixelRNN, quantize
from selfsup.methods.mae import MAE, MAEParams, patchify, random_masking, unpatchify
from selfsup.models.autoregressive import GatedPixelCNN, RowLSTM
from selfsup.models.encoder import Encoder
from selfsup.models.vit import sincos_positions


def encoder(backbone: str, channels: int = 3, side: int = 5, **options) -> Encoder:
    return Encoder(backbone, channels, side, [0.5] * channels, [0.25] * channels, **options)


def raster_channel_order(channels: int, height: int, width: int) -> torch.Tensor:
    """Position of each sub-pixel (c, i, j) in the generation order: raster, then channel."""
    i, j, c = torch.meshgrid(torch.arange(height), torch.arange(width), torch.arange(channels), indexing="ij")
    order = (i * width + j) * channels + c
    return order.permute(2, 0, 1)  # C×H×W


@pytest.mark.parametrize("architecture, depth", [(GatedPixelCNN, 5), (RowLSTM, 2)])
def test_pixel_models_are_causal_in_raster_and_channel_order(architecture, depth):
    torch.manual_seed(0)
    # 16 channels per colour: no position where every ReLU is off. 5 gated layers reach 4 columns to
    # the right in the row above (the input convolution 3), so the 5×5 image is all in reach.
    model = architecture(3, width=48, depth=depth)
    channels, side = 3, 5
    order = raster_channel_order(channels, side, side)
    x = torch.randn(1, channels, side, side, dtype=torch.float64, requires_grad=True)
    model = model.double()
    logits, _ = model.logits(x)
    weights = torch.randn(256, dtype=torch.float64)
    for c in range(channels):
        for i in range(side):
            for j in range(side):
                (grad,) = torch.autograd.grad((logits[0, :, c, i, j] * weights).sum(), x, retain_graph=True)
                grad = grad[0]
                here = order[c, i, j]
                assert torch.all(grad[order >= here] == 0), f"output ({c},{i},{j}) sees the present or future"
                if here > 0:
                    assert grad[order < here].abs().max() > 0, f"output ({c},{i},{j}) sees nothing before it"
                if isinstance(
                    model, GatedPixelCNN
                ):  # no blind spot: every earlier sub-pixel in reach is seen
                    assert torch.all(grad[order < here] != 0), f"output ({c},{i},{j}) has a blind spot"


def test_a_uniform_prediction_scores_8_bits_per_dimension():
    targets = torch.randint(0, 256, (4, 3, 5, 5))
    assert bits_per_dim(torch.zeros(4, 256, 3, 5, 5), targets).item() == pytest.approx(8.0, abs=1e-6)


def test_bits_per_dim_is_the_mean_negative_log2_likelihood():
    logits = torch.randn(2, 256, 1, 3, 3)
    targets = torch.randint(0, 256, (2, 1, 3, 3))
    probabilities = logits.softmax(dim=1)
    reference = (
        -sum(
            math.log2(probabilities[n, targets[n, 0, i, j], 0, i, j].item())
            for n in range(2)
            for i in range(3)
            for j in range(3)
        )
        / 18
    )
    assert bits_per_dim(logits, targets).item() == pytest.approx(reference, rel=1e-5)


def test_sampling_draws_8_bit_values_and_completion_keeps_the_given_rows():
    torch.manual_seed(0)
    method = PixelCNN(encoder("gated_pixelcnn", channels=1, side=4, width=8, depth=2), PixelParams())
    samples = method.sample(3, (1, 4, 4), torch.Generator().manual_seed(1))
    assert samples.shape == (3, 1, 4, 4)
    assert torch.equal(samples, quantize(samples).float() / 255)
    again = method.sample(3, (1, 4, 4), torch.Generator().manual_seed(1))
    assert torch.equal(samples, again)
    prefix = torch.rand(3, 1, 4, 4)
    completed = method.sample(3, (1, 4, 4), torch.Generator().manual_seed(2), prefix=prefix, start_row=2)
    assert torch.equal(completed[:, :, :2], prefix[:, :, :2])


def test_class_conditional_pixel_model_needs_labels():
    method = PixelRNN(encoder("row_lstm", channels=1, side=4, width=8, depth=1), PixelParams(classes=3))
    assert method.needs_labels
    images = torch.rand(2, 1, 4, 4)
    assert torch.isfinite(method([images], labels=torch.tensor([0, 2])).loss)
    with pytest.raises(ConfigError, match="needs the labels"):
        method([images])
    with pytest.raises(ConfigError, match="0 .. 2"):
        method([images], labels=torch.tensor([0, 3]))


def test_pixel_method_refuses_another_backbone():
    with pytest.raises(ConfigError, match="model.backbone=gated_pixelcnn"):
        PixelCNN(encoder("row_lstm", channels=1, side=4, width=8, depth=1), PixelParams())


def test_random_masking_hides_exactly_the_share_per_sample():
    keep, restore, mask = random_masking(50, 64, 0.75, "cpu", torch.Generator().manual_seed(0))
    assert keep.shape == (50, 16)
    assert torch.all(mask.sum(dim=1) == 48)
    assert torch.all(mask.gather(1, keep) == 0)  # the kept patches are the visible ones
    assert not torch.equal(mask[0], mask[1])  # each sample draws its own
    assert torch.equal(
        torch.sort(torch.cat([keep, (mask == 1).nonzero()[:, 1].view(50, 48)], 1), 1).values,
        torch.arange(64).expand(50, -1),
    )


def test_masked_patch_loss_matches_the_formula_and_ignores_visible_patches():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 6, 12), torch.rand(2, 6, 12)
    mask = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 1, 1, 1, 0, 0]], dtype=torch.float32)
    errors = []
    for n in range(2):
        for patch in range(6):
            if mask[n, patch]:
                t = target[n, patch]
                t = (t - t.mean()) / math.sqrt(t.var().item() + 1e-6)
                errors.append(((pred[n, patch] - t) ** 2).mean().item())
    assert masked_patch_loss(pred, target, mask).item() == pytest.approx(sum(errors) / len(errors), rel=1e-5)
    changed = target.clone()
    changed[0, 1] += 5.0  # a visible patch's target
    assert masked_patch_loss(pred, changed, mask).item() == masked_patch_loss(pred, target, mask).item()
    changed[0, 0] = torch.rand(12)  # a hidden one's
    assert masked_patch_loss(pred, changed, mask).item() != masked_patch_loss(pred, target, mask).item()


def test_mae_loss_depends_only_on_hidden_patches_of_the_target():
    torch.manual_seed(0)
    method = MAE(
        encoder("vit", channels=1, side=8, width=32, depth=1, patch_size=2),
        MAEParams(decoder_dim=16, decoder_depth=1, decoder_heads=2),
    ).eval()
    out = method.masked_prediction(torch.rand(3, 1, 8, 8), torch.Generator().manual_seed(0))
    assert torch.all(out["mask"].sum(dim=1) == 12)  # 16 patches of 2×2, 75% hidden
    base = masked_patch_loss(out["pred"], out["target"], out["mask"]).item()
    target = out["target"].clone()
    target[out["mask"] == 0] = torch.randn_like(target[out["mask"] == 0])
    assert masked_patch_loss(out["pred"], target, out["mask"]).item() == pytest.approx(base, abs=0)


def test_patchify_round_trips_and_keeps_patches_together():
    images = torch.rand(2, 3, 8, 8)
    patches = patchify(images, 4)
    assert patches.shape == (2, 4, 48)
    assert torch.equal(unpatchify(patches, 4, 3), images)
    assert torch.equal(patches[1, 1].view(4, 4, 3).permute(2, 0, 1), images[1, :, :4, 4:])  # patch (0, 1)


def test_sincos_positions_follow_the_formula():
    pos = sincos_positions(8, 3)[0]  # 9 positions, 2 frequencies per half
    row, col = 2, 1
    index = row * 3 + col
    omega = [1.0, 1.0 / 10000**0.5]
    expected = (
        [math.sin(row * w) for w in omega]
        + [math.cos(row * w) for w in omega]
        + [math.sin(col * w) for w in omega]
        + [math.cos(col * w) for w in omega]
    )
    assert pos[index].tolist() == pytest.approx(expected, abs=1e-6)


def test_mae_needs_a_vit():
    with pytest.raises(ConfigError, match="model.backbone=vit"):
        MAE(encoder("small_cnn", channels=1, side=8, width=8), MAEParams())


def test_corruptions_follow_their_parameters():
    generator = torch.Generator().manual_seed(0)
    images = torch.full((64, 3, 16, 16), 0.5)
    masked = ops.mask_patches(images, 0.5, 4, generator)
    zero = (masked == 0).all(dim=1)  # all channels of a square together
    assert zero.float().mean().item() == pytest.approx(0.5, abs=0.05)
    blocks = zero.view(64, 4, 4, 4, 4).permute(0, 1, 3, 2, 4).reshape(64, 16, 16)
    assert torch.all(blocks.all(dim=2) | ~blocks.any(dim=2))  # whole 4×4 squares
    noisy = ops.gaussian_noise(images, 0.1, generator)
    assert (noisy - images).std().item() == pytest.approx(0.1, rel=0.05)
    salted = ops.salt_and_pepper(images, 0.2, generator)
    changed = (salted != images).all(dim=1)
    assert changed.float().mean().item() == pytest.approx(0.2, abs=0.02)
    assert set(salted.permute(1, 0, 2, 3)[:, changed].unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize(
    "method, pictures, metric",
    [
        ("pixelcnn", ["samples.png", "completions.png"], "bits_per_dim"),
        ("dae", ["reconstructions.png"], "reconstruction_mse"),
        ("mae", ["reconstructions.png"], "reconstruction_mse"),
    ],
)
def test_runs_save_their_pictures_and_test_metrics(method, pictures, metric, tmp_path):
    from test_methods import tiny_for

    result = api.pretrain(
        method, "digits", out=tmp_path, epochs=1, overrides=tiny_for(method), progress=False
    )
    saved = json.loads((tmp_path / "test_metrics.json").read_text())
    assert saved == result.test_metrics and math.isfinite(saved[metric])
    if metric == "bits_per_dim":
        assert 0 < saved[metric] < 8.0  # better than uniform after one epoch
    for name in pictures:
        assert (tmp_path / name).stat().st_size > 100


def test_generative_methods_take_one_view(tmp_path):
    with pytest.raises(ConfigError, match="exactly 1 view"):
        api.pretrain("mae", "digits", out=tmp_path, epochs=1, overrides=["augment.views=2"], progress=False)
    with pytest.raises(ConfigError, match="method.noise"):
        api.pretrain(
            "dae", "digits", out=tmp_path, epochs=1, overrides=["method.noise=speckle"], progress=False
        )


def test_bad_model_sizes_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="multiple of 4"):
        api.pretrain("mae", "digits", out=tmp_path, epochs=1, overrides=["model.width=30"], progress=False)
    with pytest.raises(ConfigError, match="does not divide"):
        api.pretrain(
            "mae", "digits", out=tmp_path, epochs=1, overrides=["model.patch_size=3"], progress=False
        )
    with pytest.raises(ConfigError, match="one channel per colour"):
        GatedPixelCNN(3, width=2)
