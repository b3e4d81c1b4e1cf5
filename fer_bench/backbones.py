"""Standard backbones from torchvision, with ImageNet weights only when asked for.

Weights are downloaded (once, into torch's cache) through torchvision; offline, a clear
UserError says what to do. Tests never download anything.
"""

from __future__ import annotations

import torchvision
from torch import nn

from .errors import UserError


def torchvision_model(name: str, pretrained: bool, **kwargs) -> nn.Module:
    """torchvision.models.<name> with its default ImageNet weights if ``pretrained``."""
    if not pretrained:
        return torchvision.models.get_model(name, weights=None, **kwargs)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return torchvision.models.get_model(name, weights=weights, **kwargs)
    except Exception as e:  # URLError, HTTPError, hash mismatch, ...: all mean "no weights here"
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"Cannot load ImageNet weights for {name} ({weights}): {reason}. They are downloaded "
                        "once into torch's cache ($TORCH_HOME, default ~/.cache/torch): run once with network "
                        "access, or train from scratch with --set pretrained=false.") from None


def resnet50(pretrained: bool = False) -> nn.Module:
    """torchvision's ResNet50 (He et al. 2016, v1.5: stride on the 3x3 conv of each bottleneck)."""
    return torchvision_model("resnet50", pretrained)


class ResNet50Classifier(nn.Module):
    """torchvision's ResNet50 with its 1000-way layer replaced by a ``num_classes``-way one: the standard
    baseline several papers compare against (global average pooling, then one linear layer)."""

    def __init__(self, pretrained: bool = False, num_classes: int = 7):
        super().__init__()
        self.net = resnet50(pretrained)
        self.net.fc = nn.Linear(self.net.fc.in_features, num_classes)

    def forward(self, x):
        return self.net(x)


def resnet50_stages(net: nn.Module) -> list[nn.Module]:
    """The stem and the four stages of a torchvision ResNet, in order (C1 ... C5)."""
    return [nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool), net.layer1, net.layer2, net.layer3, net.layer4]
