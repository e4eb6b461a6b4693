"""Projection heads."""

from __future__ import annotations

from torch import nn


def mlp_head(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    layers: int = 2,
    output_bn: bool = False,
    hidden_bn: bool = True,
) -> nn.Sequential:
    """``layers`` linear layers with BatchNorm and ReLU between them (none after the last).

    With ``layers=2`` this is SimCLR's projection head g(h) = W2·ReLU(BN(W1·h)) and BYOL's
    projector and predictor. ``output_bn`` adds a BatchNorm without affine parameters after the
    last layer, as SimSiam's and MoCo v3's projectors have; ``hidden_bn=False`` drops the hidden
    BatchNorm, as in MoCo v2's head.
    """
    if layers < 1:
        raise ValueError("a head needs at least one layer")
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        if hidden_bn:
            modules += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim)]
        else:
            modules.append(nn.Linear(dim, hidden_dim))
        modules.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    modules.append(nn.Linear(dim, out_dim, bias=not output_bn))
    if output_bn:
        modules.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*modules)
