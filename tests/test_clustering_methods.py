"""SwAV's queue, prototypes and multi-crop, and NNCLR's support set, step by step."""

from dataclasses import replace

import torch
import torch.nn.functional as F

from selfsup.losses import nearest_neighbour, sinkhorn_knopp
from selfsup.methods import Progress, get_method
from selfsup.models.encoder import Encoder


def build(name: str, **params):
    torch.manual_seed(0)
    info = get_method(name)
    encoder = Encoder("small_cnn", in_channels=1, image_size=8, mean=[0.5], std=[0.25], width=8)
    return info.build(encoder, replace(info.params(), **params))


def views(n: int = 6, count: int = 2, side: int = 8) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(n, 1, side, side, generator=generator) for _ in range(count)]


SWAV = dict(proj_hidden_dim=16, proj_dim=8, prototypes=5, queue_size=12, queue_start_epoch=1)


def test_swav_fills_its_queue_from_the_start_epoch_and_uses_it_once_full():
    swav = build("swav", **SWAV)
    out = swav(views(), progress=Progress(0, 20, 2))  # epoch 0: before the queue starts
    swav.after_step(out, Progress(0, 20, 2))
    assert "queue" not in out.update and int(swav.queue_rows) == 0
    for step in (2, 3):  # epoch 1: 6 rows a step, full after two
        out = swav(views(), progress=Progress(step, 20, 2))
        swav.after_step(out, Progress(step, 20, 2))
    assert int(swav.queue_rows) == 12 and swav._queue_full()
    z = F.normalize(swav.projector(swav.encoder(torch.cat(views()))), dim=1).detach()
    torch.testing.assert_close(swav.queue[0, :6], z[:6])  # the first crop's features, in order
    scores = (z @ swav.prototypes.T).view(2, 6, -1)
    codes = swav.codes(scores)
    queued = swav.queue[0] @ swav.prototypes.detach().T
    torch.testing.assert_close(codes[0], sinkhorn_knopp(torch.cat([queued, scores[0]]))[12:])


def test_swav_keeps_unit_prototypes_frozen_first_and_takes_local_crops():
    swav = build("swav", **{**SWAV, "freeze_prototypes_epochs": 1})
    multi_crop = views(count=2) + views(count=3, side=4)
    out = swav(multi_crop, progress=Progress(0, 20, 2))
    out.loss.backward()
    assert torch.isfinite(out.loss) and swav.prototypes.grad is None
    assert out.monitored["assignments"].shape == (6, 5)
    torch.testing.assert_close(out.monitored["assignments"].sum(dim=1), torch.ones(6))
    with torch.no_grad():
        swav.prototypes.mul_(3)
    swav.after_step(out, Progress(0, 20, 2))
    torch.testing.assert_close(swav.prototypes.norm(dim=1), torch.ones(5))
    swav(multi_crop, progress=Progress(2, 20, 2)).loss.backward()  # epoch 1: the prototypes learn
    assert swav.prototypes.grad is not None


def test_nnclr_enqueues_the_first_views_projections_and_finds_them():
    nnclr = build("nnclr", proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=16, queue_size=9)
    batch = views()
    out = nnclr(batch)
    nnclr.after_step(out, Progress())
    z1 = out.update["support"]
    torch.testing.assert_close(nnclr.queue[:6], z1)
    assert int(nnclr.queue_position) == 6
    torch.testing.assert_close(nearest_neighbour(z1, nnclr.queue), z1)
    nnclr.after_step(out, Progress())  # the ring wraps around
    assert int(nnclr.queue_position) == 3
    torch.testing.assert_close(nnclr.queue[:3], z1[3:])
