"""Rodrigues, Brioso, Cruz, "Facial Expression Recognition with Machine Learning" (seed 002_8f30502b20bcaefe).

§II.A: FER-2013, 28,709 / 3,589 / 3,589 (train / validation / test), 48x48 grayscale.
§II.B: intensities standardised by the dataset's mean and standard deviation; horizontal
flip, zoom and rotation augmentation. §II.C.i: Keras ResNet50 with include_top=False on a
(48, 48, 3) input, then global average pooling and a dense output layer, from random
(weights=None) or ImageNet (weights='imagenet') initialisation. §II.C.ii: a custom network of
8 convolutional layers "based on the FER2013 Kaggle competition participants": two
convolutions followed by batch normalisation, 3x3 max pooling, dropout, dense layers (its
Figure 4 is missing from the text). Cross-entropy loss. §III: 150 epochs for every model.
"""

from torch import nn

from fer_bench import Claim, Model, Paper, keras, register
from fer_bench.backbones import resnet50

NUM_CLASSES = 7


class ResNet50GAP(nn.Module):
    """§II.C.i: ResNet50 without its top ("include_top = False"), then "Global Average Pooling and
    Dense Output Layer". At 48x48 the last stage gives a 2x2x2048 map (Keras gives the same)."""

    def __init__(self, pretrained: bool = False):
        super().__init__()
        net = resnet50(pretrained)  # torchvision's ResNet50; ImageNet weights when pretrained (clear error offline)
        net.fc = nn.Identity()  # include_top=False: drop the 1000-way ImageNet classifier
        self.features = net  # conv1 ... layer4, then torchvision's adaptive average pool = Keras GlobalAveragePooling2D
        self.head = nn.Linear(2048, NUM_CLASSES)  # "Dense Output Layer", 7 emotions (softmax is in the loss)
        keras.init(self.head)

    def forward(self, x):
        return self.head(self.features(x))


# ---------------------------------------------------------------- §II.C.ii: the custom 8-convolution CNN
# Figure 4 is missing. The text gives: 8 convolutional layers; "start with two convolutions,
# followed by a batch normalization"; max pooling over "one cluster of 3x3"; dropout; dense
# layers. The layout below is the widely copied Kaggle-era FER-2013 Keras network of that shape
# (gitshanks/fer2013, 2018: four blocks of two 3x3 convs with 64-128-256-512 filters, the first
# block conv-conv-BN, the others conv-BN-conv-BN, max pooling and dropout 0.5 after each block,
# then Dense 512-256-128 with dropout 0.4-0.4-0.5), with the paper's 3x3 pooling window.

WIDTHS = (64, 128, 256, 512)  # filters per block, doubling (Kaggle network, num_features=64)
CONV_DROPOUT = 0.5  # after each block (Kaggle network)
DENSE = ((512, 0.4), (256, 0.4), (128, 0.5))  # hidden dense widths and their dropout (Kaggle network)


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]  # Keras Conv2D(3x3, 'same', activation='relu')


def conv_block(c_in: int, c_out: int, first: bool) -> nn.Sequential:
    """Two 3x3 convs (ReLU) and batch normalisation, 3x3 max pooling (stride 2), dropout."""
    if first:  # §II.C.ii "start with two convolutions, followed by a batch normalization"
        layers = [*_conv(c_in, c_out), *_conv(c_out, c_out), keras.batch_norm(c_out)]
    else:  # the Kaggle network normalises after each conv of the later blocks
        layers = [*_conv(c_in, c_out), keras.batch_norm(c_out), *_conv(c_out, c_out), keras.batch_norm(c_out)]
    return nn.Sequential(*layers,
                         keras.MaxPool2dSame(3, stride=2),  # "one cluster of 3x3"; stride 2, 'same': halves the side
                         nn.Dropout(CONV_DROPOUT))


class CNN8(nn.Module):
    """§II.C.ii: 8 convolutions in four blocks (48 -> 24 -> 12 -> 6 -> 3), flatten, three hidden dense
    layers with dropout, a 7-way dense output."""

    def __init__(self, in_channels: int = 1, input_size: int = 48):
        super().__init__()
        widths = (in_channels, *WIDTHS)
        self.features = nn.Sequential(*[conv_block(widths[i], widths[i + 1], first=i == 0) for i in range(4)])
        side = input_size
        for _ in WIDTHS:
            side = -(-side // 2)  # each 3x3/2 'same' pooling halves the side, rounding up
        dense, n_in = [], WIDTHS[-1] * side * side  # 3x3x512 = 4608 at 48x48
        for width, p in DENSE:
            dense += [nn.Linear(n_in, width), nn.ReLU(inplace=True), nn.Dropout(p)]
            n_in = width
        self.classifier = nn.Sequential(nn.Flatten(), *dense, nn.Linear(n_in, NUM_CLASSES))  # softmax is in the loss
        self.apply(keras.init)

    def forward(self, x):
        return self.classifier(self.features(x))


# ---------------------------------------------------------------- recipe (§II.B, §II.C, §III)

RECIPE = dict(
    input_size=48,  # §II.A "all images have a resolution of 48 by 48 pixels"; §II.C.i input shape (48, 48, 3)
    channels=1,  # §II.A grayscale; the ResNet50 models replicate it to 3 (below)
    normalize="dataset",  # §II.B "subtracting the average pixel intensity of the dataset and dividing by its
    #                       standard deviation": mean/std of Training only, never of the test splits
    aug_hflip=True,  # §II.B "horizontal flipping"
    aug_scale=0.1,  # §II.B "zooming the image"; range not given: Keras zoom_range=0.1
    aug_rotation=10.0,  # §II.B "image rotation"; range not given: Keras rotation_range=10
    epochs=150,  # §III "All the models were trained in 150 epochs"
    batch_size=32,  # not given: Keras' default batch size of fit() and ImageDataGenerator.flow()
    optimizer="adam",  # not given: Keras Adam, the optimiser of the Kaggle FER-2013 networks §II.C.ii builds on
    lr=1e-3,  # Keras Adam default
    adam_eps=1e-7,  # Keras Adam default (epsilon=1e-7)
    scheduler="none",  # §III mentions no schedule
    pretrained=False,  # §II.C.i weights=None; resnet50_imagenet sets it
)

INTERPRETATIONS = {
    "torchvision ResNet50": "Keras' ResNet50 is v1 (stride in the first 1x1 conv, biased convs: 23,534,592 trainable "
                            "without top); torchvision's v1.5 (stride in the 3x3, no conv biases: 23,508,032), the "
                            "shared backbone, is used. Both are 'over 23 million' and end 2x2x2048 at 48x48.",
    "ResNet50 head": "'a custom fully-connected layer, Global Average Pooling and Dense Output Layer' is read as one "
                     "head: GAP then Dense(7), no hidden dense layer.",
    "ImageNet weights": "torchvision's default ImageNet weights (IMAGENET1K_V2), not Keras' Caffe-converted ones; the "
                        "input stays standardised by FER-2013 statistics (§II.B), not Keras' caffe preprocessing.",
    "ResNet50 init": "Keras' weights=None means glorot_uniform; the scratch backbone keeps torchvision's He init, only "
                     "the Dense head gets glorot_uniform.",
    "channels=3 (ResNet50)": "§II.C.i input shape (48, 48, 3): the grayscale image is replicated to three channels.",
    "cnn8 layout": "Figure 4 is missing: the Kaggle-era FER-2013 Keras network gitshanks/fer2013 is followed (8 "
                   "convs, 64-128-256-512; first block conv-conv-BN as §II.C.ii says, then conv-BN-conv-BN; Dense "
                   "512-256-128).",
    "cnn8 pooling": "§II.C.ii's 3x3 max-pooling window, stride 2, Keras 'same' padding (48->24->12->6->3): "
                    "TensorFlow's padding, one row/column at the bottom/right only (PyTorch's padding=1 would pad "
                    "both sides and shift the windows); the Kaggle network pooled 2x2.",
    "cnn8 convs": "3x3 kernels, 'same' padding, ReLU after each conv; the Kaggle network's first conv was 'valid' with "
                  "L2 0.01, dropped: the paper mentions no regularisation.",
    "cnn8 dropout": "0.5 after each conv block, 0.4/0.4/0.5 after the dense layers, as in the Kaggle network; the "
                    "paper gives no rates.",
    "cnn8 channels=1": "The Kaggle networks read the 48x48x1 grayscale image; nothing says cnn8 took three channels.",
    "cnn8 cost": "471 MMAC per image against ResNet50's 213 at 48x48, 7.2M parameters against 23.5M: 'less "
                 "parameters' yet 'took a bit longer to compute' (§III), as the paper says of its CNN.",
    "Keras defaults": "cnn8 and the Dense heads use Keras' glorot_uniform/zero-bias init and BatchNormalization "
                      "(eps 1e-3, momentum 0.99): the paper is a Keras implementation.",
    "optimizer=adam": "Not named: Keras Adam with its defaults (lr 1e-3, betas 0.9/0.999, eps 1e-7), as the Kaggle "
                      "FER-2013 networks used; no schedule, no weight decay.",
    "batch_size=32": "Not given: Keras' default for fit() and ImageDataGenerator.flow(), for all three models. The "
                     "Kaggle network cnn8's layout follows trained with batch 64 (gitshanks/fer2013 fertrain.py), "
                     "but the paper borrows only its architecture ('based on the FER2013 Kaggle competition "
                     "participants', Figure 4) and trains its models alike (§III: 'All the models were trained in "
                     "150 epochs'), so one unstated batch size, Keras', serves all three (--set batch_size=64).",
    "last batch": "Each epoch drops the last incomplete training batch (fer-bench's runner, all papers: one batch size "
                  "on every step, as DDP needs): 28,709 = 897 x 32 + 5, five images an epoch, a different five each "
                  "epoch since the order is reshuffled; Keras would train on them.",
    "augmentation ranges": "Rotation +-10 degrees and zoom 1+-0.1, common Keras ImageDataGenerator values for "
                           "FER-2013; Keras zooms each axis independently and fills borders by 'nearest', fer-bench "
                           "zooms isotropically and fills with 0.",
    "test split": "The paper's 28,709/3,589/3,589 train/validation/test is Kaggle's Training/PublicTest/PrivateTest; "
                  "its test numbers are compared with PrivateTest.",
    "checkpoint": "The paper reports the model after 150 epochs (validation loss rises after ~55, it says): its "
                  "accuracy and loss claims are compared with the last epoch's weights (metrics.json last_epoch); "
                  "the canonical protocol's best-PublicTest checkpoint is recorded beside them.",
    "open reading: Keras ImageNet weights": "Untested here: §II.C.i's transfer-learning model takes 'weights "
                                            "pretrained on the ImageNet dataset (weights = 'imagenet')' of the Keras "
                                            "Applications ResNet-50, i.e. Keras' own weights for its v1 network; "
                                            "fer-bench stands in torchvision's IMAGENET1K_V2 on its v1.5 ResNet50, and "
                                            "these offline machines have neither, so resnet50_imagenet's claims "
                                            "(0.6372, 0.9715, disgust ~62%, overfitting after ~55 epochs) are not run "
                                            "here. Online, `fer-bench run --paper rodrigues_cnn --model "
                                            "resnet50_imagenet` tests the torchvision stand-in; Keras' weights would "
                                            "need a Keras-v1 ResNet50, which fer-bench does not build.",
    "open reading: Figure 4 (cnn8)": "Untested here: the custom CNN is given by Figure 4 ('it is presented the used "
                                     "architecture as blocks', §II.C.ii), which the text on disk lacks; the text "
                                     "leaves only 8 convolutional layers, 'two convolutions, followed by a batch "
                                     "normalization', 3x3 max pooling, dropout and dense layers, so cnn8's widths, "
                                     "dense layers and dropout rates (gitshanks/fer2013's) are one reading, on which "
                                     "cnn8's claims (0.6492, 0.9407) are judged. A user with the published Figure 4 "
                                     "would rebuild CNN8 from it (WIDTHS, DENSE, CONV_DROPOUT and the block order) "
                                     "and run `fer-bench run --paper rodrigues_cnn --model cnn8`.",
}

# ---------------------------------------------------------------- claims (abstract, §II.A, §III)

_ACC_NOTE = ("Test set of the 28,709/3,589/3,589 split (PrivateTest); the model after 150 epochs, no checkpoint "
             "selection said: compared with the last epoch's weights.")


def _test_claims(model: str, acc: str, loss: str, source: str, quote: str) -> list[Claim]:
    return [Claim(model=model, metric="accuracy", value=float(acc), as_printed=acc, split="PrivateTest",
                  protocol="canonical", source=source, quote=quote, note=_ACC_NOTE, checkpoint="last"),
            Claim(model=model, metric="loss", value=float(loss), as_printed=loss, split="PrivateTest",
                  protocol="canonical", source=source, quote=quote, note="Categorical cross-entropy. " + _ACC_NOTE,
                  checkpoint="last")]


_TIME_QUOTE = "The ResNet-50 took approximately 1h30 min to run, using Google Colab GPU support."

CLAIMS = [
    *_test_claims("resnet50_scratch", "0.6294", "0.9717", "Abstract; §III",
                  "with random initial weights, after compiling the model and applying the dataset of testing, the "
                  "results show an accuracy of 0.6294 with a loss of 0.9717"),
    *_test_claims("resnet50_imagenet", "0.6372", "0.9715", "Abstract; §III",
                  "the evolution and final results of the model are slightly better, showing an accuracy of 0.6372 and "
                  "loss of 0.9715"),
    *_test_claims("cnn8", "0.6492", "0.9407", "Abstract; §III",
                  "the results became really promising with an accuracy of 0.6492 and loss 0.9407"),
    Claim(model="resnet50_imagenet", metric="per_class_accuracy", value=None, as_printed="~62%", split="PrivateTest",
          protocol="canonical", source="§III, Figure 7",
          quote="With the normalized results, for the disgust emotion, it shows a rate of ~62% correct predictions "
                "(Fig. 7).", matrix=[[0.62]], labels=["disgust"],
          note="Only the disgust entry of the normalised 'confusion vector' is printed; the figure is missing."),
    *[Claim(model=m, metric="train_time_hours", value=1.5, as_printed="approximately 1h30 min", split="train",
            protocol="canonical", source="§III", quote=_TIME_QUOTE,
            note="Said once of 'the ResNet-50', before the two initialisations are told apart; 150 epochs on a Google "
                 "Colab GPU (which GPU is not said).") for m in ("resnet50_scratch", "resnet50_imagenet")],
    # numbers the paper quotes from others
    Claim(model="resnet50 [8] Savoiu & Wong", metric="accuracy", value=0.651, as_printed="65.1%", split="test",
          protocol="unknown", source="§III", kind="cited",
          quote="in [8], this method is also applied to FER2013 getting an accuracy of 65.1%, slightly higher than our "
                "models", note="Savoiu & Wong 2017; which FER-2013 split is not said."),
    Claim(model="PCCPCCPCFFF CNN [3]", metric="accuracy_gain", value=0.09, as_printed="9%", split="test",
          protocol="unknown", source="§III", kind="cited", relative_to="cnn8",
          quote="In [3], the architecture was the type PCCPCCPCFFF and the final values end up being 9% less accurate "
                "in this project.",
          note="An 8-layer CNN surveyed by Pramerdorfer & Kampel 2016; read as that network being 9 points above cnn8 "
               "(absolute or relative not said)."),
    Claim(model="human [4]", metric="accuracy", value=0.655, as_printed="around 65.5%", split="all",
          protocol="unknown", source="§II.A", kind="cited",
          quote="In this dataset, the human accuracy is around 65.5% [4].",
          note="Goodfellow et al. 2013 report human accuracy of 65+-5% on a sample."),
    *[Claim(model=m, metric="trainable_params", value=23e6, as_printed="over 23 million", split="n/a",
            protocol="canonical", source="§II.C.i, citing [7]",
            quote="This version of ResNet has over 23 million trainable parameters [7].",
            note="A lower bound; Keras' ResNet50 without top has 23,534,592 trainable parameters, fer-bench's "
                 "(torchvision's ResNet50 and the Dense(7) head) 23,522,375 (tests/test_rodrigues_cnn.py).")
      for m in ("resnet50_scratch", "resnet50_imagenet")],
    *[Claim(model=m, metric="overfit_epoch", value=55.0, as_printed="around 55 epochs", split="PublicTest",
            protocol="canonical", source=f"§III ({fig})", quote=quote,
            note="Where the validation curve leaves the training curve (the figure is missing); training went on to "
                 "150 epochs.")
      for m, fig, quote in (
          ("resnet50_scratch", "Figure 5", "Around 55 epochs, the validation and train curves diverge."),
          ("resnet50_imagenet", "Figure 6", "the tendency for overfitting after the 55 epochs still exists, since the "
                                            "validation loss starts to rise"))],
    Claim(model="*", metric="accuracy_summary", value=0.65, as_printed="rounds up to 65%", split="PrivateTest",
          protocol="canonical", source="§IV",
          quote="the accuracy of all the models experimented rounds up to 65% in the test set",
          note="A summary of the three test accuracies 0.6294, 0.6372 and 0.6492: true when rounded to 5 points "
               "(62.5-67.5%); to whole percents they are 63%, 64% and 65%.", checkpoint="last"),
    Claim(model="*", metric="dataset_size", value=35685.0, as_printed="35,685", split="all", protocol="canonical",
          source="§II.A", quote="This publicly available dataset consists of 35,685 face images.",
          note="Inconsistent with the paper's own split sizes, which sum to 35,887 (FER-2013's true size)."),
    *[Claim(model="*", metric="dataset_size", value=float(n.replace(",", "")), as_printed=n, split=s,
            protocol="canonical", source="§II.A",
            quote="divided into training, validation and test sets with 28,709, 3,589 and 3,589 samples, respectively")
      for s, n in (("Training", "28,709"), ("PublicTest", "3,589"), ("PrivateTest", "3,589"))],
]

PAPER = register(Paper(
    id="rodrigues_cnn",
    title="Facial Expression Recognition with Machine Learning",
    seed="002_8f30502b20bcaefe.txt",
    models={
        "resnet50_scratch": Model(lambda cfg: ResNet50GAP(cfg["pretrained"]), recipe=dict(channels=3),
                                  summary="ResNet50 (no top), GAP, Dense(7); random init (Keras weights=None)"),
        "resnet50_imagenet": Model(lambda cfg: ResNet50GAP(cfg["pretrained"]), recipe=dict(channels=3, pretrained=True),
                                   summary="ResNet50 (no top), GAP, Dense(7); ImageNet init (transfer learning)"),
        "cnn8": Model(lambda cfg: CNN8(cfg["channels"], cfg["input_size"]),
                      summary="8 convs (64-128-256-512) with BN, 3x3 max pooling, dropout; Dense 512-256-128-7"),
    },
    recipe=RECIPE,
    claims=CLAIMS,
    interpretations=INTERPRETATIONS,
))
