"""Keras' layer defaults, for papers implemented in Keras: the same layer kinds initialised and normalised as
Keras would, so two Keras papers read the same way (rodrigues_cnn, du_resnet_fc)."""

from __future__ import annotations

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
