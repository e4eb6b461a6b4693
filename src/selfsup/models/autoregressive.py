"""Auto-regressive pixel models: Gated PixelCNN and Row LSTM PixelRNN (van den Oord, Kalchbrenner,
Kavukcuoglu et al. 2016, "Pixel Recurrent Neural Networks" and "Conditional Image Generation with
PixelCNN Decoders").

Both model p(x) = Π_i p(x_i | x_<i) over sub-pixels in raster order, and within a pixel in channel
order (R, then G given R, then B given R and G). They share the masked 7×7 input convolution (mask
A: a pixel's channel c sees only channels < c of its own pixel), the output head (two 1×1 masked
convolutions, mask B, to 256 logits per sub-pixel) and, in the method, the loss in bits per
dimension and sampling. Feature channels are split into as many groups as the image has channels;
group g may read the current pixel's groups < g (mask A) or ≤ g (mask B), which keeps the channel
order through every layer.

``forward`` returns the representation: the mean over positions of the features after
``feature_layer`` layers (the middle one by default: intermediate layers of generative models make
the better features, Chen et al. 2020, iGPT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import ConfigError

LEVELS = 256  # values of an 8-bit sub-pixel


def channel_groups(count: int, channels: int) -> torch.Tensor:
    """The colour group of each of ``count`` feature channels: contiguous blocks, 0 .. channels-1."""
    return torch.arange(count) * channels // count


def causal_mask(
    out_groups: torch.Tensor,
    in_groups: torch.Tensor,
    kernel: tuple[int, int],
    centre: tuple[int, int],
    mask_type: str,
) -> torch.Tensor:
    """Weight mask out×in×kh×kw: kernel rows above ``centre`` and columns left of it on its row are
    open; at the centre (the current pixel) output group g reads input groups < g (mask "A") or ≤ g ("B")."""
    mask = torch.zeros(len(out_groups), len(in_groups), *kernel)
    ci, cj = centre
    mask[:, :, :ci, :] = 1
    mask[:, :, ci, :cj] = 1
    order = (
        out_groups[:, None] > in_groups[None, :]
        if mask_type == "A"
        else out_groups[:, None] >= in_groups[None, :]
    )
    mask[:, :, ci, cj] = order.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A convolution whose weights are multiplied by a causal mask; ``padding`` = (left, right, top,
    bottom) places the kernel's centre on the output pixel."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int],
        centre: tuple[int, int],
        padding: tuple[int, int, int, int],
        mask_type: str,
        channels: int,
        out_groups: torch.Tensor | None = None,
    ):
        super().__init__(in_channels, out_channels, kernel)
        out_groups = channel_groups(out_channels, channels) if out_groups is None else out_groups
        self.register_buffer(
            "mask",
            causal_mask(out_groups, channel_groups(in_channels, channels), kernel, centre, mask_type),
            persistent=False,
        )
        self.pad = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, self.pad), self.weight * self.mask, self.bias)


def pointwise(
    in_channels: int, out_channels: int, channels: int, out_groups: torch.Tensor | None = None
) -> MaskedConv2d:
    """A 1×1 convolution with mask B: each output group reads the current pixel's groups up to its own."""
    return MaskedConv2d(in_channels, out_channels, (1, 1), (0, 0), (0, 0, 0, 0), "B", channels, out_groups)


class RowsAboveConv2d(nn.Conv2d):
    """An unmasked (k//2 + 1)×k convolution over the current row and the k//2 rows above it (the
    vertical stack): padded so that no row below the output pixel is read."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__(in_channels, out_channels, (kernel // 2 + 1, kernel))
        self.pad = (kernel // 2, kernel // 2, kernel // 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))


def input_convolution(channels: int, width: int, kernel: int = 7) -> MaskedConv2d:
    """The first layer of both models: a k×k convolution with mask A."""
    half = kernel // 2
    return MaskedConv2d(
        channels, width, (kernel, kernel), (half, half), (half, half, half, half), "A", channels
    )


class OutputHead(nn.Module):
    """ReLU, 1×1 (mask B), ReLU, 1×1 (mask B) to 256 logits per sub-pixel: N×256×C×H×W."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.channels = channels
        self.hidden = pointwise(width, width, channels)
        self.out = pointwise(width, LEVELS * channels, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.out(F.relu(self.hidden(F.relu(h))))
        n, _, height, width = logits.shape
        return logits.view(n, self.channels, LEVELS, height, width).transpose(1, 2)


def gate(x: torch.Tensor) -> torch.Tensor:
    """The gated activation tanh(a) ⊙ σ(b) of the two halves of the channels."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One layer of the Gated PixelCNN: a vertical stack (the rows above, any column in reach) and a
    horizontal stack (the current row up to the current pixel), without the blind spot of the first
    PixelCNN. The vertical stack's pre-activations reach the horizontal one shifted down by one row,
    so the horizontal stack only learns of rows strictly above it from there. ``bias`` (N×2·width, the
    class-conditional term V·h of the paper) is added to both stacks' pre-activations."""

    def __init__(self, channels: int, width: int, kernel: int = 3):
        super().__init__()
        half = kernel // 2
        self.width = width
        gate_groups = channel_groups(width, channels).repeat(2)
        self.vertical = RowsAboveConv2d(width, 2 * width, kernel)
        self.vertical_to_horizontal = nn.Conv2d(2 * width, 2 * width, 1)
        self.horizontal = MaskedConv2d(
            width, 2 * width, (1, half + 1), (0, half), (half, 0, 0, 0), "B", channels, out_groups=gate_groups
        )
        self.horizontal_out = pointwise(width, width, channels)

    def forward(self, state: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``state``: the vertical and horizontal stacks, N×2·width×H×W."""
        v, h = state.chunk(2, dim=1)
        v_pre = self.vertical(v)
        shifted = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]
        h_pre = self.horizontal(h) + self.vertical_to_horizontal(shifted)
        if bias is not None:
            v_pre = v_pre + bias[:, :, None, None]
            h_pre = h_pre + bias[:, :, None, None]
        return torch.cat([gate(v_pre), h + self.horizontal_out(gate(h_pre))], dim=1)


class RowLSTMLayer(nn.Module):
    """Row LSTM: the rows are processed top to bottom; each row's LSTM gates are a masked 1×3
    convolution of the layer's input on that row (input-to-state) plus a 1-D convolution of width 3
    over the previous row's hidden state (state-to-state), so a pixel's state covers a triangle of
    the rows above. Gates i, f, o, g; c = σ(f)·c + σ(i)·tanh(g); h = σ(o)·tanh(c); then a masked 1×1
    convolution and a residual connection."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.width = width
        self.input_to_state = MaskedConv2d(
            width,
            4 * width,
            (1, 3),
            (0, 1),
            (1, 1, 0, 0),
            "B",
            channels,
            out_groups=channel_groups(width, channels).repeat(4),
        )
        self.state_to_state = nn.Conv1d(width, 4 * width, 3, padding=1)
        self.output = pointwise(width, width, channels)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        gates_in = self.input_to_state(x)
        if bias is not None:
            gates_in = gates_in + bias[:, :, None, None]
        n, _, height, width = x.shape
        h = x.new_zeros(n, self.width, width)
        c = x.new_zeros(n, self.width, width)
        rows = []
        for row in range(height):
            i, f, o, g = (gates_in[:, :, row] + self.state_to_state(h)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            rows.append(h)
        return x + self.output(torch.stack(rows, dim=2))


class PixelModel(nn.Module):
    """What the two pixel models share: masked input convolution -> ``layers`` -> output head."""

    def __init__(
        self, channels: int, width: int, layers: list[nn.Module], condition_size: int, feature_layer: int = 0
    ):
        super().__init__()
        if width < channels:
            raise ConfigError(
                f"model.width must give the pixel models at least one channel per colour ({channels}), "
                f"got {width}"
            )
        self.channels, self.width = channels, width
        self.input = input_convolution(channels, width)
        self.layers = nn.ModuleList(layers)
        self.head = OutputHead(channels, width)
        self.feature_layer = feature_layer or max(1, len(layers) // 2)
        self.out_dim = width
        self.condition_size = condition_size  # per layer: the class-conditional bias of the gates

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return self.input(x)

    def _layers(
        self, state: torch.Tensor, biases: torch.Tensor | None, start: int, stop: int
    ) -> torch.Tensor:
        for index in range(start, stop):
            state = self.layers[index](state, None if biases is None else biases[:, index])
        return state

    def _map(self, state: torch.Tensor) -> torch.Tensor:
        return state[
            :, -self.width :
        ]  # the Gated PixelCNN's state is [vertical, horizontal]: the horizontal stack

    def logits(
        self, x: torch.Tensor, biases: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits N×256×C×H×W of every sub-pixel given the ones before it (``biases``:
        N×depth×condition_size), and on the way the representation N×width of ``forward``."""
        middle = self._layers(self.initial_state(x), biases, 0, self.feature_layer)
        last = self._layers(middle, biases, self.feature_layer, len(self.layers))
        return self.head(self._map(last)), self._map(middle).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._map(self._layers(self.initial_state(x), None, 0, self.feature_layer)).mean(dim=(2, 3))


class GatedPixelCNN(PixelModel):
    """Input convolutions, ``depth`` gated layers of ``width`` channels, output head.

    The horizontal stack starts from the masked 7×7 input convolution; the vertical stack from a
    4×7 convolution over the current row and the 3 above it, unmasked: it reaches the horizontal
    stack only shifted down a row, and it must see whole rows (starting it from the masked
    convolution would hide the last channel of each row's last pixel from every row below)."""

    def __init__(
        self, channels: int, width: int = 64, depth: int = 8, feature_layer: int = 0, kernel: int = 7
    ):
        super().__init__(
            channels, width, [GatedLayer(channels, width) for _ in range(depth)], 2 * width, feature_layer
        )
        self.input_vertical = RowsAboveConv2d(channels, width, kernel)

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.input_vertical(x), self.input(x)], dim=1)


class RowLSTM(PixelModel):
    """PixelRNN: masked 7×7 input convolution, ``depth`` Row LSTM layers, output head."""

    def __init__(self, channels: int, width: int = 64, depth: int = 4, feature_layer: int = 0):
        super().__init__(
            channels, width, [RowLSTMLayer(channels, width) for _ in range(depth)], 4 * width, feature_layer
        )
