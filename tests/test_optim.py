import math

import pytest
import torch

from selfsup.train.optim import LARS, build_optimizer, lr_at, scaled_lr


def test_warmup_then_cosine():
    peak, total, warm = 2.0, 100, 10
    assert lr_at(0, total, warm, peak) == pytest.approx(0.2)
    assert lr_at(9, total, warm, peak) == pytest.approx(2.0)
    assert lr_at(10, total, warm, peak) == pytest.approx(2.0)
    assert lr_at(55, total, warm, peak) == pytest.approx(1.0)
    assert lr_at(99, total, warm, peak) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_at(50, total, warm, peak, schedule="constant") == peak


def test_linear_scaling():
    assert scaled_lr(1.0, 512, "linear") == 2.0
    assert scaled_lr(1.0, 512, "none") == 1.0


def test_lars_step_matches_the_formula():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(4, 3))
    bias = torch.nn.Parameter(torch.randn(4))
    weight.grad, bias.grad = torch.randn(4, 3), torch.randn(4)
    w0, g_w, b0, g_b = weight.detach().clone(), weight.grad.clone(), bias.detach().clone(), bias.grad.clone()
    lr, wd, eta, momentum = 0.5, 1e-2, 1e-3, 0.9
    opt = LARS(
        [
            dict(params=[weight], weight_decay=wd, lars_exclude=False),
            dict(params=[bias], weight_decay=0.0, lars_exclude=True),
        ],
        lr=lr,
        momentum=momentum,
        eta=eta,
    )
    opt.step()
    g = g_w + wd * w0
    trust = eta * w0.norm() / g.norm()
    assert torch.allclose(weight.detach(), w0 - lr * trust * g, atol=1e-6)
    assert torch.allclose(bias.detach(), b0 - lr * g_b, atol=1e-6)  # excluded: no decay, no trust ratio
    # second step uses momentum: v = m·v + lr·trust·g
    weight.grad = g_w.clone()
    w1 = weight.detach().clone()
    opt.step()
    g1 = g_w + wd * w1
    v = momentum * (lr * trust * g) + lr * (eta * w1.norm() / g1.norm()) * g1
    assert torch.allclose(weight.detach(), w1 - v, atol=1e-6)


def test_biases_and_norm_parameters_get_no_weight_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = build_optimizer(model, "sgd", lr=0.1, momentum=0.9, weight_decay=0.5)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight)}


def test_bias_learning_rate_scale_and_fixed_rate_parameters():
    from selfsup.train.optim import set_lr

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    fixed = tuple(model[1].parameters())
    opt = build_optimizer(
        model, "lars", lr=1.0, momentum=0.9, weight_decay=0.0, bias_lr_scale=0.024, fixed_lr=fixed
    )
    set_lr(opt, 0.5, peak_lr=2.0)
    rate = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rate[id(model[0].weight)] == pytest.approx(0.5)
    assert rate[id(model[0].bias)] == pytest.approx(0.5 * 0.024)
    assert rate[id(model[1].weight)] == pytest.approx(2.0)  # fixed: the peak rate, whatever the schedule says
    assert rate[id(model[1].bias)] == pytest.approx(2.0 * 0.024)
    assert sum(len(g["params"]) for g in opt.param_groups) == 4


def test_simsiam_predictor_keeps_the_peak_rate():
    from selfsup.methods.simsiam import SimSiam, SimSiamParams
    from selfsup.models import Encoder

    encoder = Encoder("small_cnn", in_channels=1, image_size=8, mean=[0.5], std=[0.25], width=4)
    method = SimSiam(encoder, SimSiamParams(proj_dim=8, pred_hidden_dim=4))
    assert {id(p) for p in method.fixed_lr_parameters()} == {id(p) for p in method.predictor.parameters()}
    assert (
        SimSiam(
            encoder, SimSiamParams(proj_dim=8, pred_hidden_dim=4, fix_pred_lr=False)
        ).fixed_lr_parameters()
        == ()
    )


def test_gradients_are_clipped_one_parameter_at_a_time():
    from selfsup.train.optim import clip_gradients

    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.1, 0.0])
    clip_gradients([a, b], 1.0)
    assert torch.allclose(a.grad, torch.tensor([0.6, 0.8, 0.0]), atol=1e-5)  # norm 5 -> 1
    assert torch.equal(b.grad, torch.tensor([0.1, 0.0]))  # below the limit: untouched
