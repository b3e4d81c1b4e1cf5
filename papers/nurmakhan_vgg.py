"""Nurmakhan, Mukhametsharip, Khamitova, "Image-based Facial Expression Recognition using CNN"
(seed 003_0cc3cf82064bcc11).

A project proposal: it measures nothing itself (its claims are the numbers it cites and its
dataset statements), so what is reproduced is what it proposes and the model it cites as its
reference. §III.a: the baseline is VGG16, "13 convolutional layers, 5 max-pooling layers, and 3
fully connected layers", pre-trained on ImageNet and fine-tuned, ReLU, softmax output, categorical
cross-entropy, Adam or SGD. §IV: rotation, translation, zoom, shear and horizontal-flip augmentation;
accuracy, F1 and confusion matrices to compare (all in metrics.json).
§III.a also cites the VGGNet of Khaireddin & Chen (2021) at 73.28%: 4 convolutional stages of two
conv blocks and a max-pool, and 3 fully connected layers. Its details (widths, optimiser, schedule,
ten-crop training and ten-crop test averaging) come from their public code, github.com/usef-kh/fer.
"""

import torch
from torch import nn

from fer_bench import Claim, Model, Paper, UserError, register
from fer_bench.backbones import torchvision_model

NUM_CLASSES = 7
VGG16_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",  # §III.a: 13 conv (3x3, ReLU) ...
                512, 512, 512, "M", 512, 512, 512, "M"]  # ... and 5 max-pooling layers (Simonyan & Zisserman's D)
VGGNET_CHANNELS = (64, 128, 256, 512)  # usef-kh/fer models/vgg.py: conv1a/b ... conv4a/b
FC_WIDTH = 4096  # both networks: two 4096-wide hidden FC layers, then the 7-way one


def scaled(channels: int, width: float) -> int:
    """A layer's width under the ``width`` multiplier (1 = the published network)."""
    return max(1, int(round(channels * width)))


# ---------------------------------------------------------------- VGG16, the proposal's baseline (§III.a)

class Pool7(nn.AdaptiveAvgPool2d):
    """torchvision's AdaptiveAvgPool2d(7) with a deterministic backward where it only repeats: a 1x1 map (what a
    48x48 input leaves) is expanded to 7x7, the same numbers, whose gradient is a plain sum (CUDA has no
    deterministic adaptive_avg_pool2d backward, so --deterministic on a GPU would refuse the pooling)."""

    def __init__(self):
        super().__init__(7)

    def forward(self, x):
        if x.shape[-2:] == (1, 1):
            return x.expand(*x.shape[:-2], 7, 7)
        return super().forward(x)


class VGG16(nn.Module):
    """§III.a: torchvision's VGG16 (so ImageNet weights load), its 1000-way last layer replaced by a 7-way
    one. The five pools leave 512 x 1 x 1 from a 48x48 input; the 7x7 adaptive pool in front of the FC
    layers repeats it 49 times (see INTERPRETATIONS). ``width`` < 1 narrows every layer (no weights exist)."""

    def __init__(self, pretrained: bool = False, dropout: float = 0.5, width: float = 1.0):
        super().__init__()
        if width == 1.0:
            net = torchvision_model("vgg16", pretrained, dropout=dropout)
            net.classifier[-1] = nn.Linear(FC_WIDTH, NUM_CLASSES)
            self.features, self.avgpool, self.classifier = net.features, Pool7(), net.classifier
            return
        if pretrained:
            raise UserError(f"width={width}: ImageNet weights exist only for the full VGG16 (width=1); add "
                            "--set pretrained=false to train the narrowed network from scratch.")
        layers, c = [], 3
        for v in VGG16_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, scaled(v, width), 3, padding=1), nn.ReLU(inplace=True)]
                c = scaled(v, width)
        f = scaled(FC_WIDTH, width)
        self.features, self.avgpool = nn.Sequential(*layers), Pool7()
        self.classifier = nn.Sequential(nn.Linear(c * 7 * 7, f), nn.ReLU(True), nn.Dropout(dropout),
                                        nn.Linear(f, f), nn.ReLU(True), nn.Dropout(dropout),
                                        nn.Linear(f, NUM_CLASSES))
        for m in self.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))  # softmax: in the loss


# ---------------------------------------------------------------- VGGNet, Khaireddin & Chen 2021 (cited, §III.a)

def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """usef-kh/fer: conv3x3 (padding 1) -> BatchNorm -> ReLU (the proposal lists the three layers)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class VGGNet(nn.Module):
    """4 stages of two conv blocks and a 2x2 max-pool, 64/128/256/512 channels: a 40x40 crop leaves
    512 x 2 x 2 (40 -> 20 -> 10 -> 5 -> 2), then FC 4096 -> FC 4096 -> FC 7, dropout after each hidden FC."""

    def __init__(self, dropout: float = 0.2, width: float = 1.0):
        super().__init__()
        stages, c = [], 1  # one gray channel
        for ch in VGGNET_CHANNELS:
            ch = scaled(ch, width)
            stages.append(nn.Sequential(conv_block(c, ch), conv_block(ch, ch), nn.MaxPool2d(2, 2)))
            c = ch
        self.stages = nn.Sequential(*stages)
        f = scaled(FC_WIDTH, width)
        # their forward is relu(drop(lin(x))); ReLU and dropout commute, so this is the same function
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * 2 * 2, f), nn.ReLU(True), nn.Dropout(dropout),
                                        nn.Linear(f, f), nn.ReLU(True), nn.Dropout(dropout),
                                        nn.Linear(f, NUM_CLASSES))

    def forward(self, x):
        return self.classifier(self.stages(x))


def build_vggnet(cfg: dict) -> VGGNet:
    side = cfg["crop_size"] or cfg["input_size"]
    if side // 16 != 2:  # four 2x2 pools must leave 2x2 for the 512*2*2-input FC layer
        raise UserError(f"vggnet reads 512 x 2 x 2 features, so its input side must be 32-47 pixels; this recipe "
                        f"gives it {side} (crop_size={cfg['crop_size']}, input_size={cfg['input_size']}). "
                        "The paper's is --set crop_size=40.")
    return VGGNet(cfg["dropout"], cfg["width"])


# ---------------------------------------------------------------- recipes

RECIPE = dict(
    width=1.0,  # own key: channel multiplier of every layer; §IV plans "changing the width", smoke uses less
    dropout=0.5,  # own key, per model below
)

VGG16_RECIPE = dict(
    pretrained=True,  # §III.a "pre-trained VGG models on ... ImageNet", "fine-tune weights" (offline: pretrained=false)
    input_size=48,  # §II: FER-2013's 48x48 images, not upsampled (see interpretations)
    channels=3,  # ImageNet VGG16 reads RGB: the gray image is replicated
    normalize="imagenet",  # the statistics the ImageNet weights were trained with
    dropout=0.5,  # VGG16's own classifier dropout (torchvision, Simonyan & Zisserman); the proposal names none
    optimizer="adam",  # §III.a "the Adam optimizer or Stochastic Gradient Descent (SGD)": the first one named
    lr=1e-4,  # not given: a fine-tuning rate for pre-trained weights
    batch_size=64,  # not given
    epochs=30,  # not given: a fine-tuning budget; the best epoch is selected on PublicTest
    scheduler="none",  # not given
    aug_hflip=True,  # §IV "horizontal flips"
    aug_rotation=10.0,  # §IV "rotations" (+-10 degrees: ranges not given)
    aug_translate=0.1,  # §IV "translations" (+-10% of the side)
    aug_scale=0.1,  # §IV "zooming" (1 +- 0.1)
    aug_shear=10.0,  # §IV "shearing" (+-10 degrees)
)

VGGNET_RECIPE = dict(
    input_size=48,  # crops are cut from the 48x48 image
    crop_size=40,  # transforms.TenCrop(40): the network sees 40x40 crops
    channels=1,
    normalize="none",  # [0, 1] exactly as theirs: ToTensor() keeps a mode-'F' image's 0-255, then Normalize(0, 255)
    dropout=0.2,  # Vgg(drop=0.2), the default setup_network uses
    optimizer="sgd",  # train.py: SGD(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.0001)
    lr=0.01,
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-4,
    scheduler="plateau",  # ReduceLROnPlateau(mode='max', factor=0.75, patience=5) on validation accuracy
    plateau_monitor="val/acc",
    plateau_factor=0.75,
    plateau_patience=5,
    epochs=300,  # hparams.py n_epochs
    batch_size=64,  # get_dataloaders(bs=64): 64 images, 640 crops per step
    eval_batch_size=64,
    aug_resized_crop_min=0.8,  # RandomResizedCrop(48, scale=(0.8, 1.2))
    aug_resized_crop_max=1.2,
    aug_translate=0.2,  # RandomApply([RandomAffine(0, translate=(0.2, 0.2))], p=0.5)
    aug_affine_p=0.5,
    aug_hflip=True,  # RandomHorizontalFlip()
    aug_rotation=10.0,  # RandomApply([RandomRotation(10)], p=0.5)
    aug_rotation_p=0.5,
    train_views="tencrop",  # TenCrop(40), all ten crops trained on (crops fused into the batch, labels repeated)
    aug_erasing=0.5,  # RandomErasing(p=0.5) on each crop
    tta="tencrop",  # evaluation: the ten crops' outputs averaged ...
    tta_average="logits",  # ... as raw outputs: evaluate() sums outputs.view(bs, ncrops, -1) over crops / ncrops
    eval_fp32=True,  # only their training step runs under autocast(); validation and test run in fp32
)

INTERPRETATIONS = {
    "vgg16 input_size=48": "The proposal never says to upsample FER-2013's 48x48 faces; VGG16 runs on them as they "
                           "are (--set input_size=224 gives ImageNet's geometry at about 22x the compute).",
    "vgg16 7x7 adaptive pool": "At 48x48 the five pools leave 512x1x1, which torchvision's AdaptiveAvgPool2d(7) "
                               "repeats 49 times: the first FC (25088->4096) then acts as 512->4096 with the 49 "
                               "positions' weights summed, so the ImageNet weights still apply. fer-bench repeats the "
                               "1x1 map with expand (Pool7): the same numbers, with a backward CUDA can run "
                               "deterministically.",
    "vgg16 pretrained=true": "§III.a fine-tunes ImageNet weights; offline, --set pretrained=false trains from scratch "
                             "and config.pretrained in metrics.json records which it was.",
    "vgg16 optimizer=adam lr=1e-4": "§III.a names Adam first and SGD as the alternative, and no rate: 1e-4, a usual "
                                    "rate for fine-tuning pre-trained weights.",
    "vgg16 epochs=30 batch_size=64 no schedule": "Not given; a fine-tuning budget, the best epoch selected on "
                                                 "PublicTest as fer-bench's protocol does.",
    "vgg16 augmentation ranges": "§IV names rotation, translation, zoom, shear and flip without ranges: +-10 degrees, "
                                 "+-10%, 1+-0.1, +-10 degrees and p=0.5, one affine warp per image.",
    "vgg16 dropout=0.5, channels=3, normalize=imagenet": "VGG16's own classifier and the ImageNet weights' input "
                                                         "convention (gray replicated to RGB, ImageNet statistics).",
    "vggnet conv-BN-ReLU": "The proposal lists 'a convolutional layer, a ReLU activation layer, and a batch "
                           "normalization layer'; the cited code applies conv -> BN -> ReLU, which is followed.",
    "vggnet normalize=none": "Exact, not approximate: their pixels are a float64 array, which PIL turns into a "
                             "mode-'F' image; ToTensor does not rescale float images, so the crops stay in 0-255, and "
                             "Normalize(mean=0, std=255) then maps them to [0, 1], the range fer-bench's "
                             "normalize=none gives.",
    "vggnet RandomResizedCrop scale 0.8-1.2": "Reproduced with torchvision's rejection sampling: draws larger than "
                                              "the image are redrawn (10 tries, then the whole image), so crops "
                                              "cover 80-100% of it.",
    "vggnet augmentation resampling": "Translation and rotation keep their own p=0.5 draws; bilinear resampling "
                                      "on whole batches here, where torchvision's RandomAffine/RandomRotation "
                                      "default to nearest-neighbour.",
    "vggnet ten-crop averaging": "Their evaluate() averages the ten crops' raw outputs (sum / ncrops) and takes the "
                                 "cross-entropy of that mean: tta_average=logits does the same (fer-bench's default "
                                 "for other papers averages softmax probabilities). metrics.json also keeps the "
                                 "center-crop ('plain') numbers.",
    "vggnet validation and protocol": "Their code validates (plateau schedule, checkpoint) on ten-crop PrivateTest "
                                      "and reports PublicTest; the canonical run validates on ten-crop PublicTest "
                                      "and reports PrivateTest. The 73.28% claim is labelled protocol=paper.",
    "vggnet mixed precision": "Their fp16 autocast with GradScaler, around the training step only, is fer-bench's "
                              "--precision (bf16-mixed on Ampere+ GPUs by default) for training; eval_fp32=true "
                              "evaluates outside autocast, in fp32, as their validation and test do.",
    "vggnet throughput": "timing.train_img_per_s counts images; each is trained on as ten crops.",
    "last batch": "Every epoch drops the last incomplete batch (fer-bench's runner, all papers: one batch size on "
                  "every step, as DDP needs): vgg16 28,709 = 448 x 64 + 37, vggnet 37 images (370 crops); their "
                  "DataLoader(shuffle=True) keeps it. A different 37 each epoch, since the order is reshuffled.",
    "width=1": "Own key, the published widths; the smoke profile narrows both networks to 1/16 (and trains and tests "
               "one view per image) so CI evaluates the full test splits in seconds on a CPU. §IV plans width "
               "changes, so --set width=... stays open.",
    "cited splits": "Pramerdorfer & Kampel's 'FER2013 test accuracy' is read as PrivateTest, FER-2013's final test "
                    "split; the proposal names no split for any cited number.",
    "open reading: vggnet's tuned configuration": "Untested here: §III.a credits the 73.28% to 'the provided code' "
                                                  "at [4] but adds that Khaireddin et al. [2] 'did a grid search "
                                                  "across all parameters using six different optimizers and five "
                                                  "learning schedulers', naming none of them nor the winner; "
                                                  "fer-bench trains the code's own settings (SGD with Nesterov, a "
                                                  "plateau schedule on validation accuracy), and if the number came "
                                                  "from another cell of that grid this run does not test it. [2] is "
                                                  "not among the texts on these machines and fer-bench offers three "
                                                  "optimizers (adam, adamw, sgd) and four schedules (none, plateau, "
                                                  "step, cosine): a user with [2] would set its winning optimizer and "
                                                  "schedule with `fer-bench run --paper nurmakhan_vgg --model vggnet "
                                                  "--set ...` where fer-bench has them, and add the others.",
}

# ---------------------------------------------------------------- claims: all cited (the proposal measures nothing)

_PK2016 = ("Pramerdorfer & Kampel 2016, 'Facial Expression Recognition using Convolutional Neural Networks: State "
           "of the Art', Table IV (FER2013 test accuracy of single networks). The proposal quotes the numbers with "
           "leaderboard ranks and names no source or split; the attribution is the PAPERS.md card's.")

CLAIMS = [
    Claim(model="vggnet", metric="accuracy", value=0.7328, as_printed="73.28 %", split="PublicTest",
          protocol="paper", kind="cited", selected_on="PrivateTest",
          source="§III.a, citing [2] Khaireddin & Chen 2021 and [4] github.com/usef-kh/fer",
          quote="the proposed model achieved single-network accuracy of 73.28 % on FER-2013 without using extra "
                "training data",
          note="Khaireddin & Chen 2021. Their public code trains on Training, selects the checkpoint on "
               "PrivateTest ('val') and reports PublicTest ('test'), averaging the outputs of ten 40x40 crops."),
    Claim(model="pramerdorfer_vgg", metric="accuracy", value=0.727, as_printed="approximately 72.7%",
          split="PrivateTest", protocol="pramerdorfer_kampel_2016", kind="cited", source="§II",
          quote="The research that used FER-2013 was ranked #9 by using the VGG model with an accuracy of "
                "approximately 72.7%.",
          note=_PK2016 + " Their VGG is a 10-layer variant on 48x48 inputs, not ImageNet VGG16."),
    Claim(model="pramerdorfer_resnet", metric="accuracy", value=0.724, as_printed="72.4%", split="PrivateTest",
          protocol="pramerdorfer_kampel_2016", kind="cited", source="§II",
          quote="Another research that used the model Res-net acquired an accuracy of 72.4% and was ranked 10th "
                "position.",
          note=_PK2016 + " A ResNet-34."),
    Claim(model="pramerdorfer_inception", metric="accuracy", value=0.716, as_printed="71.6%", split="PrivateTest",
          protocol="pramerdorfer_kampel_2016", kind="cited", source="§II",
          quote="The Inception model-based project was placed in 13th place with an accuracy of 71.6%.",
          note=_PK2016),
    *[Claim(model="cnn_variants", metric="accuracy", value=v, as_printed=printed, split="test",
            protocol="unspecified", kind="cited", source="§III.a, citing [2] Khaireddin & Chen 2021",
            quote="CNN variations have proven to be effective in face expression recognition by achieving "
                  "classification accuracies ranging from 65% to 72.7% [2].",
            note=f"The {end} end of a range over several published CNNs ('65% to 72.7%'), one claim per end; "
                 "no split is named.")
      for v, printed, end in ((0.65, "65%", "lower"), (0.727, "72.7%", "upper"))],
    Claim(model="patt_lite", metric="accuracy", value=0.925, as_printed="92.5%", split="test", protocol="unknown",
          kind="cited", source="§IV, citing [7] Ngwe et al. 2023 (PAtt-Lite)",
          quote="they have achieved the best state-of-the-art results on FER2013 of 92.5% [7]",
          note="PAtt-Lite (MobileNetV1 with patch extraction and attention); the proposal names no split or protocol, "
               "and 92.5% is 18.8 points above the best other FER-2013 number it cites (73.70%)."),
    Claim(model="lethesec_resnet18", metric="accuracy", value=0.737, as_printed="73.70 %", split="PrivateTest",
          protocol="unknown", kind="cited",
          source="§IV, citing [8] LetheSec, Fer2013-Facial-Emotion-Recognition-Pytorch",
          quote="Another model achieved a state-of-the-art single-network accuracy of 73.70 % on FER-2013 without "
                "using extra training data [8].",
          note="A ResNet18 (LetheSec's README, which labels its 73.70% and Khaireddin & Chen's 73.28% alike 'Private "
               "Test Data'). Its code, adapted from usef-kh/fer, validates and keeps the best checkpoint on "
               "PrivateTest and tests on PublicTest, and the 73.28% it puts in the same column is usef-kh's PublicTest "
               "number: the split is ambiguous (PrivateTest selected on itself, or PublicTest), so no protocol is "
               "assumed."),
    # §II's own statements about the dataset (the audit compares them with FER-2013's official counts)
    Claim(model="*", metric="dataset_size", value=35887.0, as_printed="approximately 35,887", split="all",
          protocol="canonical", source="§II",
          quote="The dataset contains approximately 35,887 facial RGB images of different expressions",
          note="Exactly FER-2013's size; the images are grayscale, not RGB."),
    *[Claim(model="*", metric="dataset_size", value=float(n.replace(",", "")), as_printed=n, split=split,
            protocol="canonical", source="§II",
            quote="The training set consists of 28,709 examples and the public test set consists of 3,589 examples.")
      for split, n in (("Training", "28,709"), ("PublicTest", "3,589"))],
    *[Claim(model="*", metric="dataset_size", value=float(n), as_printed=f"{n} {name}", split="all",
            protocol="canonical", source="§II", labels=[name],
            quote="The dataset includes 4953 Anger, 547 Disgust, 5121 Fear, 8989 Happiness, 6077 Sadness, 4002 "
                  "Surprise, and 6198 Neutral images.",
            note="One class of §II's class counts, over all three splits.")
      for n, name in ((4953, "Anger"), (547, "Disgust"), (5121, "Fear"), (8989, "Happiness"), (6077, "Sadness"),
                      (4002, "Surprise"), (6198, "Neutral"))],
]

PAPER = register(Paper(
    id="nurmakhan_vgg",
    title="Image-based Facial Expression Recognition using CNN",
    seed="003_0cc3cf82064bcc11.txt",
    models={
        "vgg16": Model(lambda cfg: VGG16(cfg["pretrained"], cfg["dropout"], cfg["width"]), recipe=VGG16_RECIPE,
                       summary="torchvision VGG16 (13 conv, 5 max-pool, 3 FC), ImageNet-initialised, 7-way head"),
        "vggnet": Model(build_vggnet, recipe=VGGNET_RECIPE,
                        summary="Khaireddin & Chen 2021: 4 x (conv-BN-ReLU x2 + pool), 64-512 ch, FC 4096-4096-7, "
                                "ten-crop training and test averaging"),
    },
    recipe=RECIPE,
    keys=("width", "dropout"),  # RECIPE's keys of its own
    claims=CLAIMS,
    interpretations=INTERPRETATIONS,
    # smoke: 1/16 width, no ImageNet download, one view per image to train and to test (ten-crop training and
    # TTA would cost 10x on a CPU), so both models train and evaluate the full test splits in about a minute
    profiles={"smoke": dict(width=0.0625, pretrained=False, train_views="one", tta="none", eval_batch_size=256)},
))
