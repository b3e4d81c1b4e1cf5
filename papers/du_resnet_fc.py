"""Du, "Facial emotion recognition based on improved ResNet" (seed 001_cc3e3eddef794dc3).

§2.2: 48x48x3 inputs go into ResNet50, whose 2x2x2048 feature map feeds two blocks, each
a dropout (0.5), a batch normalisation and an activation around fully connected layers;
the first block flattens the map; a softmax layer classifies. The abstract and §4: the
blocks are "stacked with shortcut connections". §2.2.2: Adam, betas 0.9/0.999, eps 1e-8.
§2.2.3: categorical cross-entropy. §1, §4: 30 epochs, and the baseline, the classical
ResNet50, is trained with "the same callback methods". Figures 2-5 are missing from the
text, so the confusion matrix of Figure 5 cannot be transcribed.

One reading the text leaves open needs ImageNet weights, which offline machines lack: a pretrained ResNet50, frozen,
under the §2.2 head (the Keras transfer-learning template). It is registered as a reading, not as one of the paper's
models (``READING``: run by name, judged against none of the claims), with the recipe key ``trainable``.
"""

import torch
from torch import nn

from fer_bench import Claim, Model, Paper, keras, register
from fer_bench.errors import UserError
from fer_bench.backbones import ResNet50Classifier as ResNet50  # the standard 7-way ResNet50 baseline
from fer_bench.backbones import resnet50, resnet50_stages

NUM_CLASSES = 7  # FER-2013's seven classes (§2.1 says "six categories": see interpretations)
FEATURE_CHANNELS = 2048  # §2.2 "Feature maps with a scale size of 2x2x2048"
FEATURE_SIDE = 2  # 48 / 32, ResNet50's output stride
DROPOUT = 0.5  # §2.2 "dropout layer randomly drops 50 presented neurons"; PAPERS.md: 0.5
FC_WIDTH = 1024  # not given: the Dense(1024) of the Keras Applications fine-tuning example
# recipe key ``trainable`` -> how many of the backbone's five stages (stem, layer1 ... layer4), from the input, are
# frozen: their parameters get requires_grad=False (Adam skips them: no gradient) and their BatchNorm layers stay in
# inference mode (running statistics used, never updated), as Keras' ``trainable = False`` does. The head (blocks 1-2
# and the 7-way layer) always trains.
TRAINABLE = {"all": 0, "layer4+head": 4, "head": 5}


class FCBlock(nn.Module):
    """§2.2: dropout, a fully connected layer, batch normalisation, activation.

    With ``shortcut`` the block is a residual block of §2.2.1 eq. (1), H(x) = F(x) + x, the
    identity added before the block's activation as in ResNet's own blocks (Figure 3).
    """

    def __init__(self, in_features: int, out_features: int, flatten: bool = False, shortcut: bool = False):
        super().__init__()
        if shortcut and in_features != out_features:
            raise ValueError("an identity shortcut needs equal input and output widths")
        self.flatten = nn.Flatten() if flatten else nn.Identity()  # §2.2 "the first block includes a flattening layer"
        self.dropout = nn.Dropout(DROPOUT)  # §2.2 "a dropout layer"
        self.fc = nn.Linear(in_features, out_features)  # "connecting the fully connected layers"
        self.bn = keras.batch_norm(out_features, dims=1)  # §2.2 "a batch normalisation layer" (Keras defaults)
        self.act = nn.ReLU(inplace=True)  # §2.2 "an activation layer" (ReLU: ResNet's own sigma)
        self.shortcut = shortcut  # abstract, §4 "stacked with shortcut connections"

    def forward(self, x):
        x = self.flatten(x)
        y = self.bn(self.fc(self.dropout(x)))
        return self.act(y + x if self.shortcut else y)


def baseline(pretrained: bool = False) -> nn.Module:
    """'the classical ResNet50' (Keras' ResNet50 with its own top, classes=7): its Dense(7) keeps Keras' init."""
    net = ResNet50(pretrained)
    net.net.fc.apply(keras.init)
    return net


class ImprovedResNet50(nn.Module):
    """§2.2, Figure 2: ResNet50 (no top) -> 2x2x2048 -> block 1 (flatten) -> block 2 (+ shortcut) -> softmax layer."""

    def __init__(self, pretrained: bool = False, width: int = FC_WIDTH, trainable: str = "all"):
        super().__init__()
        if trainable not in TRAINABLE:
            raise UserError(f"--set trainable={trainable}: choose one of {', '.join(TRAINABLE)}.")
        self.features = nn.Sequential(*resnet50_stages(resnet50(pretrained)))  # "ResNet50 for feature extraction"
        flat = FEATURE_CHANNELS * FEATURE_SIDE * FEATURE_SIDE  # 8192 = 2 x 2 x 2048 flattened
        self.block1 = FCBlock(flat, width, flatten=True)  # the width changes here: no identity shortcut possible
        self.block2 = FCBlock(width, width, shortcut=True)  # "stacked with shortcut connections"
        self.classifier = nn.Linear(width, NUM_CLASSES)  # §2.2 "a Softmax layer" (softmax is inside the loss)
        for head in (self.block1, self.block2, self.classifier):
            head.apply(keras.init)  # Keras Dense defaults: glorot_uniform, zero bias
        self.frozen = TRAINABLE[trainable]  # trainable="all" (the paper's models): nothing frozen, nothing changes
        self.features[: self.frozen].requires_grad_(False)
        self.train()

    def train(self, mode: bool = True):
        """As nn.Module.train, but the frozen stages stay in inference mode (Keras' trainable=False BatchNorm)."""
        super().train(mode)
        self.features[: getattr(self, "frozen", 0)].train(False)
        return self

    def forward(self, x):
        return self.classifier(self.block2(self.block1(self.features(x))))


def imagenet_frozen(cfg: dict) -> nn.Module:
    """The reading READING: ImprovedResNet50 on ImageNet weights with the stages ``trainable`` names frozen; offline,
    a UserError (exit 2) naming the file to download and where torch looks for it."""
    try:
        return ImprovedResNet50(cfg["pretrained"], cfg["fc_width"], cfg["trainable"])
    except UserError as e:
        if not cfg["pretrained"] or "ImageNet weights" not in str(e):
            raise
        import torchvision

        url = torchvision.models.ResNet50_Weights.DEFAULT.url
        raise UserError(f"{e} The reading {READING} needs them: download {url} on a machine with network access "
                        f"into {torch.hub.get_dir()}/checkpoints/ ($TORCH_HOME/hub/checkpoints), or run it there once. "
                        "With pretrained=false it would freeze a randomly initialised backbone, which is not the "
                        "reading.") from None


# ---------------------------------------------------------------- recipe (§1, §2.1-§2.2.3, §4)

RECIPE = dict(
    input_size=48,  # §2.1 "resolution of 48x48 pixels"; §2.2 "48x48x3 inputs"
    channels=3,  # §2.2 "48x48x3": the gray image is replicated
    normalize="none",  # not stated: pixels scaled to [0, 1], Keras' rescale=1./255
    optimizer="adam",  # §1, §2.2.2 "Adaptive Moment Estimation (Adam)"
    lr=1e-3,  # §2.2.2 names the step size eta but no value: Keras' Adam default
    adam_beta1=0.9,  # §2.2.2 "beta_1 and beta_2 ... are default as 0.9 and 0.999"
    adam_beta2=0.999,
    adam_eps=1e-8,  # §2.2.2 "epsilon is a constant equalling 10^-8"
    weight_decay=0.0,  # no regularisation besides dropout and batch normalisation is mentioned
    label_smoothing=0.0,  # §2.2.3 plain categorical cross-entropy, eq. (7)
    epochs=30,  # §1 "with 30 epochs and the Adam optimizer"; §4 "with 30 epochs"
    batch_size=32,  # not stated: Keras' model.fit default
    # §4 "the same callback methods" for both models, not named: a plateau schedule on the validation loss
    # (Keras ReduceLROnPlateau's factor), and ModelCheckpoint keeping the best validation accuracy
    scheduler="plateau",
    plateau_monitor="val/loss",
    plateau_factor=0.1,
    plateau_patience=10,  # PyTorch's rule: cut after 11 epochs without improvement (Keras' default: 10; see below)
    monitor="val/acc",
    pretrained=False,  # no pre-training is mentioned; ImageNet weights with --set pretrained=true
)

# The open reading (see INTERPRETATIONS "open reading: pretrained, frozen"): fer-bench's reading, not the paper's
# statement. Every other value is RECIPE's, with its source there.
READING = "improved_resnet50_imagenet_frozen"
READING_RECIPE = dict(
    fc_width=FC_WIDTH,  # the §2.2 head of improved_resnet50, unchanged
    pretrained=True,  # fer-bench's reading: Keras' ResNet50(weights="imagenet") (its default), torchvision's weights
    trainable="head",  # fer-bench's reading: the template's base_model.trainable = False, backbone frozen
    normalize="imagenet",  # fer-bench's choice: the pretrained weights' own input scaling (torchvision's mean/std)
)

INTERPRETATIONS = {
    "fc_width=1024": "No widths are given; both fully connected layers of the blocks get 1024 units, the Dense(1024) "
                     "of the Keras Applications fine-tuning example (`--set fc_width=N` changes it).",
    "block order": "§2.2 lists dropout, batch normalisation and activation around the fully connected layers; each "
                   "block is Dropout -> Linear -> BatchNorm -> ReLU (the listed order, the dense layer after dropout).",
    "shortcut": "The 'shortcut connections' are an identity shortcut around block 2, added before its ReLU as in "
                "eq. (1)/Figure 3; block 1 changes the width (8192 -> 1024), where only a projection would fit.",
    "activation=ReLU": "'an activation layer' without a name; ReLU, the sigma of ResNet's blocks (§2.2.1).",
    "softmax layer": "§2.2's 'Softmax layer' is a 7-way fully connected layer; the softmax is inside the loss.",
    "dropout=0.5": "'randomly drops 50 presented neurons' is read as a rate of 0.5 (50%) in both blocks.",
    "resnet50 baseline": "'the classical ResNet50' keeps its own top: global average pooling and a 7-way layer "
                         "(Keras' ResNet50 with include_top=True, classes=7).",
    "Keras defaults": "The paper is a Keras implementation (Keras' Adam and callbacks above): the fully connected "
                      "layers and the 7-way layers of both models use Keras' Dense init (glorot_uniform, zero bias) "
                      "and the blocks' BatchNormalization Keras' eps 1e-3 and momentum 0.99 (PyTorch momentum 0.01), "
                      "as rodrigues_cnn reads the same layer kinds; the ResNet50 backbone keeps torchvision's init.",
    "last batch": "Each epoch drops the last incomplete batch (28,709 = 897 x 32 + 5: 5 images an epoch, a different "
                  "5 each epoch since the order is reshuffled); Keras would train on it. Recorded, not changed: every "
                  "paper's runner shares this rule (the same batch size on every step, as DDP needs).",
    "torchvision ResNet50": "torchvision's ResNet50 (v1.5, convs without bias, 23,508,032 parameters without top) "
                            "stands in for Keras' (v1, convs with bias, 23,587,712); both map 48x48 to 2x2x2048.",
    "flatten order": "Keras flattens the map as HxWxC, PyTorch as CxHxW: the same layer up to a permutation of "
                     "the first fully connected layer's inputs.",
    "pretrained=false": "Pre-training is not mentioned; trained from scratch (Keras' ResNet50 would default to "
                        "ImageNet weights: `--set pretrained=true`).",
    "lr=1e-3": "§2.2.2 writes the Adam update with a step size but gives no value; Keras' Adam default.",
    "batch_size=32": "Not stated; Keras' model.fit default.",
    "callbacks": "'the same callback methods' are not named; a plateau schedule on val_loss with factor 0.1 "
                 "plus ModelCheckpoint on validation accuracy; no EarlyStopping, since both models ran the stated "
                 "30 epochs.",
    "plateau_patience=10 (PyTorch's rule)": "The paper names no callback, so the patience is fer-bench's choice. "
                 "PyTorch's ReduceLROnPlateau(patience=10), which the committed runs trained, cuts the learning rate "
                 "after 11 epochs without improvement; Keras' default (patience=10) cuts after 10, which is "
                 "plateau_patience=9 here. Kept so the committed runs stay this recipe's. Its effect on them, from "
                 "their logged validation losses (the schedule's input; the rate itself is not logged): resnet50 "
                 "seed 0 (best at epoch 16) was cut after epoch 27, Keras would have cut after 26, so epoch 27 "
                 "trained at 1e-3 instead of 1e-4; improved_resnet50 seed 0 (best at epoch 19) reached its cut after "
                 "epoch 30, the last, so all 30 epochs trained at 1e-3, where Keras would have trained epoch 30 at "
                 "1e-4 (its selected checkpoint, epoch 25, precedes both).",
    "normalize=none": "No normalisation is stated; pixels are scaled to [0, 1] (Keras' rescale=1./255).",
    "no augmentation": "None is described (§4 leaves 'advanced data augmentation' to future work).",
    "splits": "'3589 for testing and validation' is read as 3,589 each (PublicTest, PrivateTest), which with "
              "28,709 training images makes the stated 35,887.",
    "validation split": "Table 1 repeats the endpoints of Figure 4's curves (a Keras validation curve); its numbers "
                        "are compared with PublicTest, the canonical validation split, PrivateTest beside it, and "
                        "with the weights after the 30th epoch (metrics.json last_epoch), since a curve's end is the "
                        "last epoch, not the best one.",
    "open reading: pretrained, frozen": f"Untested here: an ImageNet-pretrained ResNet50, frozen, under the §2.2 "
                                        "head (the common Keras transfer-learning template it resembles). It needs "
                                        "ImageNet weights, which these offline machines lack. Online: `fer-bench run "
                                        f"--paper du_resnet_fc --model {READING}` (`--seed N` for more seeds; `--set "
                                        "trainable=layer4+head` also trains the last stage, the template's fine-tuning "
                                        "step). A reading, not one of the paper's models: its runs are listed beside "
                                        "du's, judged against none of its claims.",
    f"{READING} (fer-bench's reading)": "What the paper does not state, read as the Keras transfer-learning template: "
                                        "pretrained=true (torchvision's DEFAULT ResNet50 weights, IMAGENET1K_V2, stand "
                                        "in for Keras' ImageNet weights), trainable=head (stem and layer1-layer4 "
                                        "frozen: requires_grad=False and their BatchNorm in inference mode, as Keras' "
                                        "base_model.trainable = False; blocks 1-2 and the 7-way layer train), and "
                                        "normalize=imagenet (the weights' own mean/std; Keras would call its "
                                        "preprocess_input). The input stays 48x48x3 (§2.2); everything else is the "
                                        "recipe above.",
    "287039": "§2.1's '287039 images for training' is a typo for the official 28,709 (35,887 - 2 x 3,589).",
    "seven classes": "§2.1 says 'six categories', but FER-2013 has seven and §3 speaks of Disgust and 'the other "
                     "six classes'; 7 outputs.",
}

# ---------------------------------------------------------------- claims (abstract, §1, §2.1, §3, §4, Table 1)

_TABLE1_NOTE = ("Which split the held-out numbers come from is not said ('3589 for testing and validation'); they "
                "equal the endpoints of Figure 4's curves, so they are read as the last epoch's validation values.")

CLAIMS = [
    Claim(checkpoint="last", model="improved_resnet50", metric="accuracy", value=0.5731, as_printed="57.31%", split="PublicTest",
          protocol="canonical", source="Table 1; §1; §3 (Figure 4)", quote="Improved ResNet50 1.15563 57.31%",
          note=_TABLE1_NOTE),
    Claim(checkpoint="last", model="improved_resnet50", metric="loss", value=1.15563, as_printed="1.15563", split="PublicTest",
          protocol="canonical", source="Table 1", quote="Improved ResNet50 1.15563 57.31%",
          note="Categorical cross-entropy. " + _TABLE1_NOTE),
    Claim(checkpoint="last", model="resnet50", metric="accuracy", value=0.44, as_printed="44.00%", split="PublicTest",
          protocol="canonical", source="Table 1", quote="ResNet50 1.47082 44.00%", note=_TABLE1_NOTE),
    Claim(checkpoint="last", model="resnet50", metric="loss", value=1.47082, as_printed="1.47082", split="PublicTest",
          protocol="canonical", source="Table 1", quote="ResNet50 1.47082 44.00%",
          note="Categorical cross-entropy. " + _TABLE1_NOTE),
    Claim(checkpoint="last", model="improved_resnet50", metric="accuracy_gain", value=0.1331, as_printed="13.31%", split="PublicTest",
          protocol="canonical", source="Abstract; §1; §3; §4; Table 1",
          quote="The accuracy achieved by the improved model on the Facial Emotion Recognition 2013 dataset "
                "(FER-2013) is 13.31% higher than that of the ResNet50",
          relative_to="resnet50",
          note="Absolute points: Table 1's 57.31% - 44.00%. §4: 'with 30 epochs and the same callback methods'."),
    Claim(model="improved_resnet50", metric="accuracy_curve", value=None, as_printed="from 41.73% to 57.31%",
          split="PublicTest", protocol="canonical", source="§3 (Figure 4, bottom right)",
          quote="the accuracy rises from 41.73% to 57.31%", matrix=[[0.4173, 0.5731]],
          labels=["first epoch", "last epoch (30)"],
          note="Endpoints of the training curve; the figure is missing, and whether the curve is the training or "
               "the validation one is not said (its end equals Table 1)."),
    Claim(model="improved_resnet50", metric="loss_curve", value=None, as_printed="from 5.3601 to 1.1556",
          split="PublicTest", protocol="canonical", source="§3 (Figure 4, bottom left)",
          quote="the cross-entropy loss drops from 5.3601 to 1.1556", matrix=[[5.3601, 1.1556]],
          labels=["first epoch", "last epoch (30)"],
          note="Endpoints of the cross-entropy curve; its end equals Table 1's 1.15563 rounded."),
    Claim(model="resnet50", metric="accuracy_curve", value=None, as_printed="less than 45%", split="PublicTest",
          protocol="canonical", source="§3 (Figure 4, upper right)",
          quote="The loss is larger than 1.4 and the accuracy is less than 45%", matrix=[[0.45]],
          labels=["upper bound over the 30 epochs"],
          note="A bound, not a value: the baseline's accuracy curve stays below 45% with 'large fluctuations'."),
    Claim(model="resnet50", metric="loss_curve", value=None, as_printed="larger than 1.4", split="PublicTest",
          protocol="canonical", source="§3 (Figure 4, upper left)",
          quote="The loss is larger than 1.4 and the accuracy is less than 45%", matrix=[[1.4]],
          labels=["lower bound over the 30 epochs"],
          note="A bound, not a value: the baseline's loss curve stays above 1.4."),
    # numbers §1 quotes from others (none of them is FER-2013's canonical protocol)
    Claim(model="feng2004_lbp", metric="accuracy", value=0.77, as_printed="77%", split="test", protocol="unknown",
          kind="cited", dataset="jaffe", source="§1, citing [3] Feng, Hadid, Pietikainen 2004",
          quote="introduced a classification scheme based on Local Binary Pattern (LBP) which improved the average "
                "correct rate to 77% with the JAFFE database",
          note="An LBP classifier's 'average correct rate' on JAFFE; the evaluation protocol is not given."),
    *[Claim(model=f"miyakoshi2011_bayesian_{part}", metric="accuracy", value=round(float(acc) / 100, 6),
            as_printed=f"{acc}%", split="test", protocol="unknown", kind="cited", dataset="unspecified",
            source="§1, citing [4] Miyakoshi and Kato 2011",
            quote="The proposed network had a recognition rate of 67.1%, 56.0%, and 49.5% when the image's eyes, "
                  "brows, and mouths were occluded [4].",
            note=f"A Bayesian network's recognition rate with the {part} occluded; the dataset is not named (a "
                 "laboratory dataset, before FER-2013).")
      for part, acc in (("eyes", "67.1"), ("brows", "56.0"), ("mouth", "49.5"))],
    Claim(model="zahara2020_xception_cnn", metric="accuracy", value=0.6597, as_printed="65.97%", split="test",
          protocol="unknown", kind="cited", source="§1, citing [6] Zahara et al. 2020",
          quote="trained by FER-2013 and classifying real-time images captured from a webcam with a mean accuracy of "
                "65.97%",
          note="An Xception-inspired CNN trained on FER-2013; whether 65.97% is measured on a FER-2013 split or on "
               "the webcam images is not said."),
    Claim(model="*", metric="dataset_size", value=35887.0, as_printed="35,887", split="all", protocol="canonical",
          source="§2.1", quote="FER-2013 consists of 35,887 images"),
    Claim(model="*", metric="dataset_size", value=287039.0, as_printed="287039", split="Training",
          protocol="canonical", source="§2.1", quote="separated into 287039 images for training",
          note="A typo: FER-2013's official Training split has 28,709 images (35,887 - 2 x 3,589), which is what "
               "fer-bench trains on; official counts 28,709 / 3,589 / 3,589."),
    Claim(model="*", metric="dataset_size", value=3589.0, as_printed="3589", split="PublicTest",
          protocol="canonical", source="§2.1", quote="3589 for testing and validation",
          note="Read as 3,589 for validation (the official PublicTest count)."),
    Claim(model="*", metric="dataset_size", value=3589.0, as_printed="3589", split="PrivateTest",
          protocol="canonical", source="§2.1", quote="3589 for testing and validation",
          note="Read as 3,589 for testing (the official PrivateTest count)."),
]

PAPER = register(Paper(
    id="du_resnet_fc",
    title="Facial emotion recognition based on improved ResNet",
    seed="001_cc3e3eddef794dc3.txt",
    models={
        "improved_resnet50": Model(lambda cfg: ImprovedResNet50(cfg["pretrained"], cfg["fc_width"]),
                                   recipe=dict(fc_width=FC_WIDTH),  # unstated width, --set-able
                                   summary="ResNet50 -> 2x2x2048 -> [flatten, dropout, FC, BN, ReLU] -> "
                                           "[dropout, FC, BN, +shortcut, ReLU] -> 7-way"),
        "resnet50": Model(lambda cfg: baseline(cfg["pretrained"]),
                          summary="classical ResNet50: global average pooling, 7-way head (baseline)"),
    },
    recipe=RECIPE,
    keys=("fc_width", "trainable"),  # improved_resnet50's unstated fully connected width; the reading's frozen stages
    readings={READING: Model(imagenet_frozen, recipe=READING_RECIPE,
                             summary="ImageNet-pretrained ResNet50, frozen (BatchNorm in inference mode) -> the §2.2 "
                                     "head: fer-bench's reading, not the paper's statement")},
    claims=CLAIMS,
    interpretations=INTERPRETATIONS,
))
