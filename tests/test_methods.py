"""Every method trains on real data (the digits) without NaN and without collapse."""

import math
import warnings

import pytest
import torch

from conftest import TINY, digits_knn_accuracy
from selfsup import api
from selfsup.methods import METHODS, Progress
from selfsup.methods.momentum import cosine_momentum, ema_update

TINY_GENERATIVE = {
    "dae": ["model.width=8", "method.decoder_width=8"],
    "mae": ["model.width=32", "model.depth=2", "method.decoder_dim=32", "method.decoder_depth=1"],
    "ijepa": ["model.width=32", "model.depth=2", "method.predictor_dim=32", "method.predictor_depth=1"]
    + ["method.predictor_heads=2"],
    # iBOT keeps its recipe's head (BatchNorm, 1,024 prototypes, teacher temperature 0.04), as DINO
    # does: a narrower one starts with the outputs too close together for the collapse monitor
    "ibot": ["model.width=32", "model.depth=2", "optim.lr=2e-3", "optim.lr_scaling=none"],
    "pixelcnn": ["model.width=16", "model.depth=3"],
    "pixelrnn": ["model.width=16", "model.depth=2"],
}
"""Tiny models for the methods that have no projection head."""

EPOCHS = {"mae": 60}
"""MAE's features first get worse than at initialisation (kNN 0.52 -> 0.39 after 10 epochs of the
tiny model, benchmarks/generative_choices.py), and only then better (0.56 at 30 epochs, 0.76 at 100): an epoch
takes 0.1 s."""


def tiny_for(method: str) -> list[str]:
    """TINY, but DINO keeps its recipe's head: with a 16-d bottleneck the head's outputs start
    (at initialisation) too close together for the collapse monitor."""
    if method in TINY_GENERATIVE:
        return TINY_GENERATIVE[method] + [
            "train.batch_size=128",
            "optim.warmup_epochs=0.5",
            "train.pictures=2",
        ]
    return [o for o in TINY if not o.startswith("method.")] if method == "dino" else TINY


IMAGE_METHODS = sorted(name for name, info in METHODS.items() if info.build.modality == "image")
"""The text methods have theirs in test_text.py."""


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_method_learns_on_real_digits_without_collapse(method, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = api.pretrain(
            method,
            "digits",
            out=tmp_path,
            epochs=EPOCHS.get(method, 4),
            overrides=tiny_for(method),
            progress=False,
        )
    assert not [str(w.message) for w in caught if "collapse" in str(w.message)]
    losses = [h["loss"] for h in result.history]
    assert all(math.isfinite(v) for v in losses)
    dim = 32  # small_cnn with width 8, and the tiny ViT; the tiny pixel models have 16
    # 0 is complete collapse; 1/sqrt(dim) is the spread of points uniform on the sphere
    assert result.history[-1]["embedding_std"] > 0.1 / math.sqrt(dim)
    assert (
        result.history[-1].get("assignment_information", 1.0) > 0.05
    )  # DINO: neither uniform nor one prototype
    assert digits_knn_accuracy(tmp_path) > 0.5  # chance is 0.1


def test_cosine_momentum_schedule():
    assert cosine_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 50, 100) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 100, 100) == pytest.approx(1.0)


def test_ema_update_follows_the_formula():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    ema_update(target, online, momentum=0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * o.detach())


def test_byol_target_differs_from_the_online_network_after_training(tmp_path):
    result = api.pretrain("byol", "digits", out=tmp_path, epochs=1, overrides=TINY, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    online = state["encoder.backbone.features.0.weight"]
    target = state["target_encoder.backbone.features.0.weight"]
    assert not torch.equal(online, target) and result.history


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_every_method_has_both_recipes_and_they_name_their_source(method):
    from selfsup.methods.recipes import build_config

    for small in (False, True):
        config = build_config(method, small_images=small)
        assert config.recipe == f"{method}{'_small' if small else ''}.yaml"
        assert len(config.source) > 20
        own = {
            "mae": "vit",
            "ijepa": "vit",
            "ibot": "vit",
            "pixelcnn": "gated_pixelcnn",
            "pixelrnn": "row_lstm",
        }  # architectures of the method
        assert config.model.backbone == own.get(method, "small_cnn" if small else "resnet18")


def test_moco_v2_queue_takes_each_steps_keys_in_order_and_wraps_around():
    from selfsup.methods.moco import MoCoV2, MoCoV2Params
    from selfsup.models import Encoder

    torch.manual_seed(0)
    encoder = Encoder("small_cnn", in_channels=1, image_size=8, mean=[0.5], std=[0.25], width=4)
    method = MoCoV2(encoder, MoCoV2Params(proj_dim=8, queue_size=10, symmetric=True))
    views = [torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)]
    for step in range(3):  # 6 keys a step into a queue of 10: positions 0-5, 6-9 then 0-1, 2-7
        before = method.queue.clone()
        out = method(views)
        keys = out.update["keys"].clone()
        out.loss.backward()
        method.after_step(out, Progress(step, 3))
        index = (torch.arange(6) + 6 * step) % 10
        assert torch.allclose(method.queue[index], keys)
        untouched = torch.ones(10, dtype=torch.bool)
        untouched[index] = False
        assert torch.equal(method.queue[untouched], before[untouched])
    assert int(method.queue_position) == 8


def test_siamese_triplet_semi_hard_learns_where_hardest_negatives_collapse(tmp_path):
    """Schroff et al. 2015 (Sec. 3.2): the hardest negatives from the start can collapse the model;
    semi-hard ones do not. The collapse monitor sees the difference."""
    runs = {}
    for mining in ("semi_hard", "hardest"):
        overrides = TINY + ["method.loss=triplet", "method.margin=0.2", f"method.mining={mining}"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = api.pretrain(
                "siamese", "digits", out=tmp_path / mining, epochs=4, overrides=overrides, progress=False
            )
        assert all(math.isfinite(h["loss"]) for h in result.history)
        runs[mining] = ([str(w.message) for w in caught if "collapse" in str(w.message)], result.history[-1])
    assert runs["semi_hard"][0] == [] and digits_knn_accuracy(tmp_path / "semi_hard") > 0.5
    assert runs["hardest"][1]["projection_std"] < runs["semi_hard"][1]["projection_std"]


def siamese(**params):
    from selfsup.methods.siamese import Siamese, SiameseParams
    from selfsup.models import Encoder

    encoder = Encoder("small_cnn", in_channels=1, image_size=8, mean=[0.5], std=[0.25], width=4)
    return Siamese(encoder, SiameseParams(**params))


def test_siamese_negatives_random_hardest_and_semi_hard():
    anchors = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    others = torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.2, 0.0]])
    assert siamese(mining="hardest").negatives(anchors, others).tolist() == [2, 2, 1]
    assert siamese().negatives(anchors, others).tolist() == [1, 2, 0]
    # semi-hard: the closest negative farther than the positive (each anchor's own index).
    # anchor 0: positive 0.1, others 0.9 and 0.2 -> 2; anchor 1: positive 0.1, others 0.9 and 0.8 -> 2;
    # anchor 2: positive 6.93, others 7.00 and 6.47 -> 0 (the hardest, index 1, is closer than the positive)
    assert siamese(mining="semi_hard").negatives(anchors, others).tolist() == [2, 2, 0]
    # none farther than the positive: the farthest
    assert siamese(mining="semi_hard").negatives(
        anchors[:2], torch.tensor([[5.0, 0.0], [5.0, 0.0]])
    ).tolist() == [1, 0]


def test_siamese_labelled_pairs_respect_classes():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2])
    method = siamese(pairs="labels", mining="hardest")
    positive = method.positives(labels)
    assert labels[positive].tolist() == labels.tolist()
    assert positive[:4].ne(torch.arange(4)).all() and positive[4] == 4  # class 2 has one image: its own view
    anchors = torch.zeros(5, 2)
    others = torch.tensor([[0.0, 0.0], [0.0, 0.1], [3.0, 0.0], [4.0, 0.0], [5.0, 0.0]])
    negative = method.negatives(anchors, others, positive, labels)
    assert (labels[negative] != labels).all()
    assert negative.tolist() == [2, 2, 0, 0, 0]


def test_siamese_learns_from_labelled_pairs(tmp_path):
    overrides = TINY + ["method.pairs=labels", "method.loss=triplet", "method.margin=0.2"]
    api.pretrain("siamese", "digits", out=tmp_path, epochs=4, overrides=overrides, progress=False)
    assert digits_knn_accuracy(tmp_path) > 0.8


def test_labelled_pairs_on_unlabelled_data_is_a_clear_error(tmp_path):
    from conftest import write_image
    from selfsup.errors import DataError

    for i in range(8):
        write_image(tmp_path / "flat" / f"{i}.png", size=(8, 8), seed=i)
    with pytest.raises(DataError, match="learns from labels.*unlabelled"):
        api.pretrain(
            "siamese",
            str(tmp_path / "flat"),
            out=tmp_path / "run",
            epochs=1,
            progress=False,
            overrides=TINY + ["method.pairs=labels", "train.batch_size=4"],
        )
    assert not (tmp_path / "run").exists()  # refused before any run directory is written


def test_unknown_siamese_loss_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="method.loss.*contrastive or triplet"):
        api.pretrain(
            "siamese",
            "digits",
            out=tmp_path,
            epochs=1,
            overrides=TINY + ["method.loss=hinge"],
            progress=False,
        )


def test_dino_teacher_temperature_warms_up_and_centre_follows_the_teacher():
    from selfsup.methods.dino import DINO, DINOParams
    from selfsup.models import Encoder

    torch.manual_seed(0)
    encoder = Encoder("small_cnn", in_channels=1, image_size=8, mean=[0.5], std=[0.25], width=4)
    method = DINO(
        encoder, DINOParams(out_dim=32, hidden_dim=16, bottleneck_dim=8, warmup_teacher_temp_epochs=2)
    )
    assert method.teacher_temperature(Progress(0, 100, 10)) == pytest.approx(0.04)
    assert method.teacher_temperature(Progress(10, 100, 10)) == pytest.approx(0.055)
    assert method.teacher_temperature(Progress(25, 100, 10)) == pytest.approx(0.07)
    views = [torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)]
    out = method(views)
    with torch.no_grad():
        _, _, teacher = method._by_resolution(method.teacher_encoder, method.teacher_head, views)
    out.loss.backward()
    method.after_step(out, Progress(0, 100, 10))
    assert torch.allclose(method.center, 0.1 * teacher.mean(dim=(0, 1)), atol=1e-6)
    # the step comes from the Progress; checkpoints of earlier versions, with their step count, still load
    method.load_state_dict({**method.state_dict(), "steps_done": torch.tensor(1)})


def test_dino_schedules_follow_the_progress():
    """The teacher temperature and the frozen prototypes (1 epoch by default) read the step and
    the epoch length from the training's Progress, not from state kept in the method."""
    from selfsup.losses import dino_loss
    from selfsup.methods.dino import DINO, DINOParams
    from selfsup.models import Encoder

    torch.manual_seed(0)
    encoder = Encoder("small_cnn", in_channels=1, image_size=8, mean=[0.5], std=[0.25], width=4)
    method = DINO(
        encoder, DINOParams(out_dim=32, hidden_dim=16, bottleneck_dim=8, warmup_teacher_temp_epochs=2)
    )
    views = [torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)]
    for step, frozen, temperature in ((0, True, 0.04), (9, True, 0.0535), (10, False, 0.055)):
        method.zero_grad()
        progress = Progress(step, 100, 10)
        out = method(views, progress=progress)
        out.loss.backward()
        assert (method.head.prototypes.grad is None) == frozen, step
        assert method.teacher_temperature(progress) == pytest.approx(temperature)
        with torch.no_grad():
            _, _, student = method._by_resolution(method.encoder, method.head, views)
            _, _, teacher = method._by_resolution(method.teacher_encoder, method.teacher_head, views)
        expected = dino_loss(student, teacher, method.center, 0.1, temperature)
        assert torch.allclose(out.loss, expected), step
    assert method(views).loss == method(views, progress=Progress()).loss  # no progress: step 0


def test_dino_takes_local_views_of_another_size():
    from selfsup.methods.dino import DINO, DINOParams
    from selfsup.models import Encoder

    encoder = Encoder("small_cnn", in_channels=1, image_size=8, mean=[0.5], std=[0.25], width=4)
    method = DINO(encoder, DINOParams(out_dim=32, hidden_dim=16, bottleneck_dim=8))
    views = [torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8), torch.rand(4, 1, 4, 4), torch.rand(4, 1, 4, 4)]
    out = method(views)
    assert torch.isfinite(out.loss) and out.monitored["embedding"].shape == (4, 16)


def test_moco_v2_split_batchnorm_keeps_order_and_normalises_each_part_alone():
    from selfsup.methods.moco import MoCoV2, MoCoV2Params
    from selfsup.models import Encoder

    torch.manual_seed(0)
    encoder = Encoder("small_cnn", in_channels=1, image_size=8, mean=[0.5], std=[0.25], width=4)
    method = MoCoV2(encoder, MoCoV2Params(proj_dim=8, queue_size=16, bn_splits=2))
    images = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        parts = torch.cat([encoder(images[:4]), encoder(images[4:])])
        assert torch.allclose(method.split_encode(encoder, images, shuffle=False), parts, atol=1e-5)
        assert not torch.allclose(encoder(images), parts, atol=1e-3)  # whole-batch statistics differ
        encoder.eval()  # without batch statistics the shuffle is invisible: the order comes back
        assert torch.allclose(method.split_encode(encoder, images, shuffle=True), encoder(images), atol=1e-5)


@pytest.mark.parametrize("method", ["ijepa", "ibot"])
def test_vit_methods_refuse_another_backbone(method, tmp_path):
    with pytest.raises(api.SelfsupError, match=f"{method} needs selfsup's ViT.*model.backbone=vit"):
        api.pretrain(
            method, "digits", out=tmp_path, epochs=1, overrides=["model.backbone=small_cnn"], progress=False
        )
