"""Keras' layer defaults, for papers implemented in Keras: the same layer kinds initialised and normalised as
Keras would, so two Keras papers read the same way (rodrigues_cnn, du_resnet_fc), and a new Keras paper imports
them from here rather than from another paper."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # keras.layers.BatchNormalization(epsilon=1e-3)
BN_MOMENTUM = 0.01  # Keras momentum=0.99 keeps 0.99 of the running value; PyTorch's momentum is the new share


def batch_norm(channels: int, dims: int = 2) -> nn.Module:
    """keras.layers.BatchNormalization with its defaults, over feature maps (dims=2) or dense features (dims=1)."""
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def init(m: nn.Module) -> None:
    """Keras' defaults for Conv2D/Dense: glorot_uniform kernels, zero biases (use with Module.apply)."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class MaxPool2dSame(nn.MaxPool2d):
    """keras.layers.MaxPooling2D(k, strides=s, padding='same'): ceil(n / s) outputs per side of n pixels.

    TensorFlow pads each side's ``total = max((ceil(n / s) - 1) * s + k - n, 0)`` missing rows (columns) with -inf,
    ``total // 2`` at the top (left) and the rest, ``total - total // 2``, at the bottom (right): the odd one goes
    bottom/right. For the usual 3x3 window with stride 2:

    - an even side (48, 24, 12, 6) has total 1: one row below and one column to the right, none above or to the
      left, so the first window is x[0:3, 0:3] (PyTorch's ``padding=1`` would pad both sides and shift every
      window up and left by one pixel);
    - an odd side (3, 5, 7) has total 2: one row above AND one below (one column left and right), the same
      windows as PyTorch's ``padding=1`` with -inf.

    A side of 5 becomes 3 with windows over rows -1..1, 1..3, 3..5; a side of 4 becomes 2 with rows 0..2, 2..4.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__(kernel_size, stride)

    def forward(self, x):
        pad = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad lists the last dimension first
            total = max((-(-n // self.stride) - 1) * self.stride + self.kernel_size - n, 0)
            pad += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pad, value=float("-inf")))
