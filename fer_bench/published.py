"""Published FER-2013 accuracies: a reviewer's reference for "is this claim above the state of the art?".

This is a reference, not ground truth. Each row is a number as its authors published it, on FER-2013's official
split (train on Training; report PrivateTest, the Kaggle challenge's final test set, unless the row says
otherwise), without extra training data. Published numbers are themselves claims: they differ in protocol
details (test-time augmentation, checkpoint selection) that this table does not normalise. A claim above the best
of them is not proven wrong; it is a number that needs more evidence than the paper gives.

How the rows were chosen:
- the numbers the reproduced papers' own texts quote (``shared/seeds``): Khaireddin & Chen 2021 and
  Pramerdorfer & Kampel 2016's single networks, quoted by seed 003 (nurmakhan_vgg, §II, §III.a);
- widely cited results on the official split whose value we checked against the authors' own abstract or
  repository: Pramerdorfer & Kampel's ensemble (abstract of arXiv:1612.02903), Khaireddin & Chen (abstract of
  arXiv:2105.03588), Pham et al.'s Residual Masking Network (its repository's benchmark table), Pecoraro et al.'s
  LHC-Net (checked only in the FER-2013 result tables of later work that repeat it, not in the paper itself);
- left out: numbers we could not check here (Kim et al. 2016's committees; Tang 2013, the challenge's winning
  entry), results on other datasets (Mao et al.'s POSTER++ reports RAF-DB, AffectNet and CAER-S, no FER-2013),
  and outliers far above every other FER-2013 result (PAtt-Lite's 92.5%, which nurmakhan_vgg cites: a reference
  that included it would flag nothing).
Add a row only with its source; ``best`` returns the highest per kind.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    authors: str
    year: int
    method: str
    kind: str  # single (one network) | ensemble (several networks' outputs combined)
    accuracy: float  # fraction
    as_printed: str
    split: str
    source: str  # where the number is printed, and where we checked it


PUBLISHED = (
    Published("Pramerdorfer & Kampel", 2016, "Inception", "single", 0.716, "71.6%", "PrivateTest",
              "seed 003 (nurmakhan_vgg §II) quotes it; arXiv:1612.02903"),
    Published("Pramerdorfer & Kampel", 2016, "ResNet", "single", 0.724, "72.4%", "PrivateTest",
              "seed 003 (nurmakhan_vgg §II) quotes it; arXiv:1612.02903"),
    Published("Pramerdorfer & Kampel", 2016, "VGG", "single", 0.727, "72.7%", "PrivateTest",
              "seed 003 (nurmakhan_vgg §II) quotes it; arXiv:1612.02903"),
    Published("Pramerdorfer & Kampel", 2016, "ensemble of VGG, Inception and ResNet networks", "ensemble", 0.752,
              "75.2%", "PrivateTest", "arXiv:1612.02903, abstract"),
    Published("Khaireddin & Chen", 2021, "VGGNet, tuned (ten-crop test-time augmentation)", "single", 0.7328,
              "73.28%", "PublicTest (their code selects the checkpoint on PrivateTest)",
              "arXiv:2105.03588, abstract; quoted by seed 003 (nurmakhan_vgg §III.a)"),
    Published("Pham et al.", 2020, "Residual Masking Network", "single", 0.7414, "74.14%", "PrivateTest",
              "ICPR 2020, 'Facial Expression Recognition using Residual Masking Network'; the authors' repository"),
    Published("Pham et al.", 2020, "Residual Masking Network and 6 other CNNs", "ensemble", 0.7682, "76.82%",
              "PrivateTest", "ICPR 2020; the authors' repository (phamquiluan/ResidualMaskingNetwork)"),
    Published("Pecoraro et al.", 2022, "LHC-Net (local multi-head channel self-attention)", "single", 0.7442,
              "74.42%", "PrivateTest", "Information 13(9):419, 2022 (arXiv:2111.07224)"),
)


def best(kind: str = "single") -> Published:
    """The highest published accuracy of one kind ('single' or 'ensemble'; 'ensemble' means any kind)."""
    rows = [p for p in PUBLISHED if kind == "ensemble" or p.kind == kind]
    return max(rows, key=lambda p: p.accuracy)
