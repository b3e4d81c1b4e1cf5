"""Miao, Li, Lin, "Facial Expression Recognition Based on Multi-feature Fusion" (seed 004_a4f14454cdff9422).

§3.1: a ResNet whose residual blocks are 1x1 -> 3x3 -> 1x1 bottlenecks, pre-activated (BN and
RReLU before each convolution): P-ResNet. §3.3 / Fig. 4: a two-channel network on the 48x48x1
image: a cut VGG19 (3x3 convolutions with zero padding, RReLU, 2x2 max pooling halving the map,
five layers of 64, 128, 256, 512, 512 channels) whose shallow features are brought by a
convolution and pooling to the size of deeper ones and fused with them, beside the P-ResNet;
each channel ends in a fully connected layer, the two vectors are concatenated, dropout, a fully
connected layer, softmax: P-ResNet-VGG. §2.1/§3.3: RReLU is the activation everywhere.
§4.3: SGD, lr 0.01, batch 128, 200 epochs, lr held 50 epochs then x0.9 every 5; JAFFE by 5-fold
cross-validation, 30 epochs per fold, the model with the lowest test loss kept.
"""

import torch
from torch import nn

from fer_bench import Claim, Model, Paper, register

NUM_CLASSES = 7
VGG_CHANNELS = (64, 128, 256, 512, 512)  # §3.3 "The channel numbers of the five convolution kernels are 64, ..."
PRESNET_STEM = 64  # not given: the ResNet stem, a 3x3 stride-2 conv (ResNet's stem also downsamples)
PRESNET_STAGES = ((32, 128, 1), (64, 256, 2), (128, 512, 2))  # (bottleneck width, output channels, stride); not given
PRESNET_BLOCKS = 2  # per stage; not given ("the number of network layers is modified", "fewer network layers")
FC_FEATURES = 256  # not given: width of each channel's fully connected layer
DROPOUT = 0.5  # §3.3 "a dropout layer is introduced"; rate not given


def act() -> nn.RReLU:
    """§2.1: "The activation function selects the R-ReLU function"; slope drawn from U(1/8, 1/3) in
    training, fixed to its mean in evaluation (PyTorch's defaults: the paper gives no range)."""
    return nn.RReLU()


# ---------------------------------------------------------------- §3.1 P-ResNet

class PreActBottleneck(nn.Module):
    """§3.1, Fig. 2-3: 1x1 -> 3x3 -> 1x1, each convolution preceded by BN and RReLU (pre-activation);
    identity shortcut, or a 1x1 projection of the pre-activated input where the shape changes."""

    def __init__(self, cin: int, width: int, cout: int, stride: int = 1):
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(cin), act(), nn.Conv2d(cin, width, 1, bias=False),
            nn.BatchNorm2d(width), act(), nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width), act(), nn.Conv2d(width, cout, 1, bias=False),
        )
        self.project = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                        if stride != 1 or cin != cout else None)

    def forward(self, x):
        if self.project is None:
            return x + self.residual(x)  # eq. (3): x_L = x_l + sum F(x_i, W_i)
        pre = self.residual[1](self.residual[0](x))  # the projection reads the pre-activated input (He et al. 2016b)
        return self.project(pre) + self.residual[2:](pre)


class PResNetTrunk(nn.Module):
    """Stem 3x3 stride-2 conv (48 -> 24), three stages of PRESNET_BLOCKS bottlenecks (maps 24, 12, 6), final
    BN-RReLU, global average pooling: a 512-vector."""

    def __init__(self):
        super().__init__()
        layers, cin = [nn.Conv2d(1, PRESNET_STEM, 3, stride=2, padding=1, bias=False)], PRESNET_STEM
        for width, cout, stride in PRESNET_STAGES:
            for b in range(PRESNET_BLOCKS):
                layers.append(PreActBottleneck(cin, width, cout, stride if b == 0 else 1))
                cin = cout
        layers += [nn.BatchNorm2d(cin), act(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.out_features = cin

    def forward(self, x):
        return self.body(x)


class PResNet(nn.Module):
    """§3.1: "the feature map is generated after multiple residual block processing, and then passed to the
    subsequent fully connected layer for classification"."""

    def __init__(self):
        super().__init__()
        self.trunk = PResNetTrunk()
        self.fc = nn.Linear(self.trunk.out_features, NUM_CLASSES)

    def forward(self, x):
        return self.fc(self.trunk(x))  # softmax is inside the cross-entropy loss (§3.2)


# ---------------------------------------------------------------- §3.3 P-ResNet-VGG

def vgg_stage(cin: int, cout: int) -> nn.Sequential:
    """§3.3: a 3x3 convolution with zero padding (the map keeps its size), RReLU, then max pooling to half."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), act(), nn.MaxPool2d(2))


def fusion_branch(cin: int, cout: int) -> nn.Sequential:
    """§3.3: "the size is adjusted by the convolutional pooling layer for fusion": a stride-2 3x3 conv and a
    2x2 max pool bring a shallow map to the channels and the quarter size of a map two stages deeper."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), act(), nn.MaxPool2d(2))


class CutVGG(nn.Module):
    """The left channel of Fig. 4 on 48x48x1: five conv-RReLU-pool stages (maps 24, 12, 6, 3, 1) and two fusion
    branches (§3.3 "there are two branches"): stage-1 features (64@24) join the input of stage 4 (256@6),
    stage-2 features (128@12) join the input of stage 5 (512@3), "combined and input to the next
    convolutional layer" by addition."""

    def __init__(self):
        super().__init__()
        chans = (1, *VGG_CHANNELS)
        self.stages = nn.ModuleList(vgg_stage(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.fuse1 = fusion_branch(VGG_CHANNELS[0], VGG_CHANNELS[2])  # shallow 64@24x24 -> 256@6x6
        self.fuse2 = fusion_branch(VGG_CHANNELS[1], VGG_CHANNELS[3])  # shallow 128@12x12 -> 512@3x3
        self.out_features = VGG_CHANNELS[-1]

    def forward(self, x):
        s1 = self.stages[0](x)
        s2 = self.stages[1](s1)
        s3 = self.stages[2](s2) + self.fuse1(s1)  # shallow + deep
        s4 = self.stages[3](s3) + self.fuse2(s2)
        return self.stages[4](s4).flatten(1)  # 512@1x1 -> 512


class PResNetVGG(nn.Module):
    """§3.3, Algorithm 1: D1 = FC(VGG channel), D2 = FC(P-ResNet channel), D = [D1, D2] -> dropout -> FC -> 7."""

    def __init__(self):
        super().__init__()
        self.vgg, self.presnet = CutVGG(), PResNetTrunk()
        self.vgg_fc = nn.Sequential(nn.Linear(self.vgg.out_features, FC_FEATURES), act())
        self.presnet_fc = nn.Sequential(nn.Linear(self.presnet.out_features, FC_FEATURES), act())
        self.dropout = nn.Dropout(DROPOUT)
        self.fc = nn.Linear(2 * FC_FEATURES, NUM_CLASSES)

    def forward(self, x):
        d = torch.cat([self.vgg_fc(self.vgg(x)), self.presnet_fc(self.presnet(x))], dim=1)
        return self.fc(self.dropout(d))


# ---------------------------------------------------------------- recipe (§4.1, §4.3)

RECIPE = dict(
    input_size=48,  # §4.1 "the size of the pictures in the two data sets was unified to 48x48"
    channels=1,  # §3.3 "a 48x48 single-channel picture"
    normalize="dataset",  # not stated: the training images' mean and std (see interpretations)
    aug_hflip=True,  # §4.1 "mirrored horizontally"
    aug_rotation=10.0,  # §4.1 "rotated slightly" (range not given)
    optimizer="sgd",  # §3.3 "stochastic gradient descent (SGD) is used for optimization"
    lr=0.01,  # §4.3 "the learning rate is set to 0.01"
    momentum=0.9,  # not given (see interpretations)
    weight_decay=5e-4,  # not given (see interpretations)
    scheduler="step",  # §4.3 "The learning rate of the first 50 iterations remains unchanged ...
    lr_hold=50,  # ... When the number of iterations exceeds 50, the learning rate begins to decay,
    step_size=5,  # once every 5 rounds.
    step_gamma=0.9,  # The learning rate becomes 0.9 times the original."
    batch_size=128,  # §4.3 "the batch size is 128"
    eval_batch_size=256,
    channels_last=False,  # RReLU's kernel returns NCHW: NHWC costs a layout copy at every activation (1.6x slower)
    epochs=200,  # §4.3 "the epoch is set to 200"
    monitor="val/acc",  # canonical: PublicTest accuracy; --set protocol=paper selects on the test subset, as §3.4
    paper_train_size=28000,  # --set protocol=paper: §4.3 "28,000 sheets are selected as the training set
    paper_test_size=3500,  # and 3,500 sheets as the test set"
)
JAFFE_RECIPE = dict(  # --dataset jaffe: these replace the FER-2013 values there
    epochs=30,  # §4.3 "Each network is trained for 30 epochs"
    monitor="val/loss",  # §4.3 "The model with the lowest test loss value is used as the final ..."
    batch_size=16,  # not given (see interpretations)
)

INTERPRETATIONS = {
    "P-ResNet depth and widths": "Not given beyond 'fewer network layers' and 'parameters greatly reduced': a 3x3 "
                                 "stride-2 stem (64; 48 -> 24, as ResNet's stem downsamples), three stages of two "
                                 "bottlenecks (widths 32/64/128, outputs 128/256/512, maps 24, 12, 6), 20 weighted "
                                 "layers, 0.87M parameters (ResNet-18: 11M), 78M multiply-adds per image.",
    "pre-activation": "§3.1 says RReLU is 'added after each convolution' and then that BN and activation 'before the "
                      "convolutional layer' give pre-activation (Fig. 3); we build the pre-activation block of He et "
                      "al. 2016b, with BN-RReLU before each of the three convolutions and no activation after the sum.",
    "projection shortcut": "Where a stage changes width or stride, the shortcut is a 1x1 conv of the pre-activated "
                           "input (He et al. 2016b); the paper only shows the identity shortcut.",
    "cut VGG19": "§3.3 'There are five such convolutional layers in total': one 3x3 conv per stage (VGG19 has "
                 "2/2/4/4/4), with bias and no BN (the paper names conv, zero padding, RReLU and max pooling only).",
    "shallow/deep fusion": "Fig. 4 is not legible in the text: two fusion branches (§3.3 'there are two branches'), "
                           "each a stride-2 3x3 conv + RReLU + 2x2 max pool bringing the stage-1 (64@24) and stage-2 "
                           "(128@12) maps to the size of the stage-3 and stage-4 outputs, added to them before the "
                           "next conv.",
    "per-channel FC": "Each channel's vector (VGG 512@1x1, P-ResNet globally pooled 512) goes through FC(512->256) + "
                      "RReLU; concatenated 512, dropout 0.5 (rate not given), FC -> 7.",
    "RReLU range": "Not given: PyTorch's default U(1/8, 1/3), the mean slope in evaluation.",
    "momentum=0.9, weight_decay=5e-4": "Not given (eq. (8) is the textbook per-sample update, at odds with batch 128); "
                                       "the values of the public PyTorch FER-2013 code (WuJie1010/Facial-Expression-"
                                       "Recognition.Pytorch) whose schedule this is (lr 0.01, batch 128, x0.9 every 5 "
                                       "epochs from epoch 50).",
    "lr schedule": "'first 50 ... unchanged; exceeds 50 ... decay once every 5 rounds, x0.9': factor "
                   "0.9**(max(0, e-50)//5) at 0-based epoch e: 1 at epochs 0-54, 0.9 at 55-59, 0.9**29 at epoch 199.",
    "rotation=10": "'rotated slightly': +-10 degrees.",
    "protocol": "The paper trains on 28,000 and tests on 3,500 FER2013 images (sources unsaid) keeping 'the model with "
                "the highest accuracy', i.e. selecting on its test set. The default is the canonical protocol; "
                "--set protocol=paper trains on a seeded 28,000 of Training and selects on and reports a seeded 3,500 "
                "of PrivateTest (split_seed), recorded as selecting on the test set.",
    "JAFFE folds": "'divided into 5 parts': stratified by expression (seeded); --set folds_by=subject gives "
                   "subject-independent folds, which the paper does not use.",
    "JAFFE batch_size=16": "Not given; 128 would be one step per epoch on a fold's ~170 training images.",
    "JAFFE lr schedule": "The FER2013 schedule applies unchanged; with 30 epochs it never leaves the 50-epoch hold.",
    "normalize=dataset": "Not stated: the dataset's mean and standard deviation (of Training; of each fold's "
                         "training images on JAFFE), fer-bench's default, kept deliberately: the cut VGG channel has "
                         "no batch normalisation, so a zero-mean, unit-variance input suits it. The public FER-2013 "
                         "code whose schedule the recipe follows uses ToTensor only ([0, 1]): --set normalize=none.",
    "categorical cross-entropy": "Eq. (5) is written as binary cross-entropy (y log y^ + (1 - y) log(1 - y^)), yet "
                                 "the task is 7-way with a softmax layer and the text calls it 'multi-class cross "
                                 "entropy ... only related to the probability of the correct class': categorical "
                                 "cross-entropy over the softmax is used.",
    "activation after the addition": "Eq. (2) writes x_{l+1} = f(y_l), RReLU after the addition (the original, "
                                     "post-activation ResNet unit), while §3.1 and Fig. 3 pre-activate; the "
                                     "pre-activation unit (no RReLU after the sum) is built, which §3.1 names as the "
                                     "paper's modification.",
    "last batch": "Each epoch drops the last incomplete training batch (fer-bench's runner, all papers: one batch "
                  "size on every step, as DDP needs): 28,709 = 224 x 128 + 37 on FER-2013; on a JAFFE fold of ~170 "
                  "training images with batch 16, ten. A different few each epoch, since the order is reshuffled.",
    "JAFFE per-class": "Table 1-2's JAFFE rows are compared with what §4.3's protocol measures: per-fold accuracies "
                       "over the 5 test folds, their mean and sample std, and the pooled per-class accuracy of all "
                       "test folds. The printed per-class numbers (100.00 apart) are neither pooled counts k/29-k/32 "
                       "nor means over the folds of any 5-fold split (the claim audit), so they come from something "
                       "the paper does not describe (repeated runs, perhaps); the comparison is with the protocol it "
                       "states.",
    "open reading: JAFFE": "Untested here: every JAFFE claim (Tables 1-2's JAFFE column, Table 4's P-ResNet and "
                           "P-ResNet-VGG rows): JAFFE is not on these machines (fer-bench ships none; it may not be "
                           "redistributed; only FER-2013 is on disk), and §4.1 says only that 'the size of the "
                           "pictures in the two data sets was unified to 48×48', so whether JAFFE's 256x256 frames "
                           "were cropped to the face first is open, where fer-bench resizes the whole frame and has "
                           "no crop step. With the original files: `fer-bench run --paper miao_presnet_vgg --model all "
                           "--dataset jaffe --folds 5 --data PATH` (`--set folds_by=subject` for subject-independent "
                           "folds); the face-crop reading also needs a crop step fer-bench lacks.",
    "open reading: Figs. 2-4 architecture": "Untested here: P-ResNet's depth and widths and the cut VGG's fusion "
                                            "branches are drawn only in Figs. 2-4 ('Fig. 4. Overall network "
                                            "structure'), which the text on disk lacks; the text gives 'the number of "
                                            "network layers is modified' (§1), 'fewer network layers' (§4.3) and "
                                            "'there are two branches. Used as a feature fusion' (§3.3), so "
                                            "fer-bench's P-ResNet (20 weighted layers, 0.87M parameters) and its two "
                                            "fusion branches are one reading, on which every claim of both models is "
                                            "judged. A user with legible figures would set PRESNET_STAGES, "
                                            "PRESNET_BLOCKS and the fusion branches from them and run `fer-bench run "
                                            "--paper miao_presnet_vgg --model all --set protocol=paper`.",
}

# ---------------------------------------------------------------- claims (Tables 1-4)

EMOTIONS = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Normal"]  # the tables' order = FER-2013's
TABLES = {  # table -> (model, caption, {dataset: [per-class ... , Average]}), numbers as printed (%)
    1: ("presnet", "Accuracy of P-ResNet on two data sets %",
        {"fer2013": ["71.27", "69.43", "71.53", "75.71", "74.51", "72.38", "72.45", "72.47"],
         "jaffe": ["95.31", "97.01", "97.66", "98.48", "98.41", "96.83", "97.10", "97.25"]}),
    2: ("presnet_vgg", "Accuracy of P-ResNet-VGG on two data sets %",
        {"fer2013": ["73.25", "70.63", "72.47", "77.38", "75.42", "74.61", "71.91", "73.67"],
         "jaffe": ["97.66", "98.51", "99.22", "100.00", "99.21", "98.41", "98.55", "98.79"]}),
}
COLUMN = {"fer2013": "FER2013", "jaffe": "JAFFE"}
JAFFE_STEPS = (" JAFFE has 29-32 images per expression, so a per-class accuracy pooled over the test folds is k/29 "
               "... k/32; none of these numbers but 100.00 is such a fraction, nor the mean over 5 folds of per-fold "
               "accuracies for any way of dealing the class's images into 5 folds (the claim audit tries every one). "
               "So they are neither pooled nor fold-averaged accuracies of one 5-fold cross-validation as §4.3 "
               "describes it: means over repeated runs, or numbers of another kind; the paper does not say.")
# the protocol and split each dataset's numbers were measured under, and what the paper selected on
WHERE = {
    "fer2013": dict(split="PrivateTest", protocol="paper", selected_on="test",
                    note="Measured on the paper's own 3,500-image test set (28,000 train), the checkpoint with the "
                         "highest test accuracy kept (§3.4, §4.3); compare with --set protocol=paper (a seeded 3,500 "
                         "of PrivateTest), and with caution with the canonical PrivateTest."),
    "jaffe": dict(split="test", protocol="5-fold", selected_on="test",
                  note="5-fold cross-validation of the 213 JAFFE images, the model with the lowest test loss kept per "
                       "fold (§4.3); compare with the mean over folds of `--dataset jaffe --folds 5`."),
}


def _table_claims(table: int) -> list[Claim]:
    model, caption, columns = TABLES[table]
    claims = []
    for dataset, printed in columns.items():
        where = dict(WHERE[dataset], dataset=dataset)
        claims.append(Claim(
            model=model, metric="per_class_accuracy", value=None,
            as_printed="; ".join(f"{e} {p}" for e, p in zip(EMOTIONS, printed[:7])),
            source=f"§4.3, Table {table}, column {COLUMN[dataset]}", quote=f"Table {table}. {caption}",
            matrix=[[round(float(p) / 100, 6) for p in printed[:7]]], labels=EMOTIONS,
            **dict(where, note=where["note"] + " The Average row is the unweighted mean of these seven numbers."
                   + (JAFFE_STEPS if dataset == "jaffe" else ""))))
        comparison = 3 if dataset == "fer2013" else 4  # the same average is the model's row of Table 3 / 4
        claims.append(Claim(
            model=model, metric="accuracy", value=round(float(printed[7]) / 100, 6), as_printed=f"{printed[7]}%",
            source=f"§4.3, Table {table}, column {COLUMN[dataset]}, row Average; Table {comparison}",
            quote=f"Table {table}. {caption} ... Average {printed[7]}", **where))
    return claims


def _cited(table: int, dataset: str, rows: list[tuple[str, str, str]]) -> list[Claim]:
    """Table 3/4 rows of other methods: (a name of ours, the row label, accuracy as printed). The tables' own
    rows (P-ResNet, P-ResNet-VGG) repeat Tables 1-2's averages and are claimed there."""
    caption = {3: "Comparison of accuracy rates with other models on the FER2013 dataset %",
               4: "Comparison of accuracy rates of several models on Jaffe dataset %"}[table]
    return [Claim(model=model, metric="accuracy", value=round(float(acc) / 100, 6), as_printed=f"{acc}%",
                  kind="cited", split="test", protocol="unknown", dataset=dataset,
                  source=f"§4.3, Table {table}, row {label}", quote=f"Table {table}. {caption}: {label} {acc}",
                  note=f"{label} of the paper's references, quoted in the table beside the paper's own numbers; "
                       "the paper gives neither the protocol nor the split it was measured on, so neither is "
                       "assumed to be the paper's own.")
            for model, label, acc in rows]


def _ck_plus(model: str, ref: str, acc: str, quote: str, what: str) -> Claim:
    """§1's CK+ numbers of other work (the paper does not test on CK+)."""
    return Claim(model=model, metric="accuracy", value=round(float(acc) / 100, 6), as_printed=f"{acc}%",
                 kind="cited", split="test", protocol="unknown", dataset="ck+", source=f"§1, citing {ref}",
                 quote=quote, note=f"{what}; the protocol and split on CK+ are not given.")


CLAIMS = [
    *_table_claims(1),
    *_table_claims(2),
    *_cited(3, "fer2013", [
        ("guo2016_relativity", "Ref. [16]", "70.86"),  # Guo, Tao, Yu, ICMEW 2016
        ("zhou2016_multiscale_cnn", "Ref. [17]", "71.80"),  # Zhou et al., CCBR 2016
        ("hua2019_hero", "Ref. [18]", "71.91"),  # Hua et al., IEEE Access 2019
    ]),
    *_cited(4, "jaffe", [
        ("zhang2019_stacked_hybrid_autoencoder", "Ref. [19]", "96.70"),  # Zhang, Wang, Wei 2019
        ("kommineni2020_hybrid_features", "Ref. [20]", "98.14"),  # Kommineni et al. 2020
        ("kola2020_adaptive_lbp", "Ref. [21]", "92.81"),  # Kola, Samayamantula 2020
    ]),
    _ck_plus("chu_attention", "[8] Chu et al.", "97.45",
             "The network based on the attention model proposed by Chu et al. [8] achieved an accuracy of 97.45% on "
             "the CK+ data set.", "An attention-based network"),
    _ck_plus("lu_7layer_cnn", "[9] Lu et al.", "81.5",
             "Lu et al. [9] designed a 7-layer CNN to perform expression recognition on CK+ and only achieved an "
             "accuracy of 81.5%.", "A 7-layer CNN"),
    Claim(model="*", metric="dataset_size", value=28000.0, as_printed="28,000", split="train", protocol="paper",
          source="§4.3", quote="28,000 sheets are selected as the training set and 3,500 sheets as the test set"),
    Claim(model="*", metric="dataset_size", value=3500.0, as_printed="3,500", split="PrivateTest", protocol="paper",
          source="§4.3", quote="28,000 sheets are selected as the training set and 3,500 sheets as the test set",
          note="The paper's test set; its source within FER2013 is not said."),
    Claim(model="*", metric="dataset_size", value=35888.0, as_printed="35888", split="all", protocol="canonical",
          source="§4.2", quote="with a total of 35888 unique facial expression images",
          note="FER-2013 has 35,887."),
    Claim(model="*", metric="dataset_size", value=213.0, as_printed="213", split="all", protocol="5-fold",
          dataset="jaffe", source="§4.2", quote="The JAFFE dataset consists of 213 pictures"),
]

PAPER = register(Paper(
    id="miao_presnet_vgg",
    title="Facial Expression Recognition Based on Multi-feature Fusion",
    seed="004_a4f14454cdff9422.txt",
    models={
        "presnet": Model(lambda cfg: PResNet(),
                         summary="P-ResNet: 3x3 stem, 3 stages x 2 pre-activation 1x1-3x3-1x1 bottlenecks, RReLU, FC"),
        "presnet_vgg": Model(lambda cfg: PResNetVGG(),
                             summary="cut VGG19 (64-128-256-512-512, 2 shallow->deep fusions) || P-ResNet, FC each, "
                                     "concat, dropout, FC"),
    },
    recipe=RECIPE,
    datasets={"jaffe": JAFFE_RECIPE},
    claims=CLAIMS,
    interpretations=INTERPRETATIONS,
    # the CPU smoke run evaluates in batches of 32: 1.5-2x the images/s of 256 on the 2-core CI CPU (cache-bound;
    # presnet 275 vs 177, presnet_vgg 112 vs 63 img/s), and evaluation does not depend on the batching
    profiles={"smoke": dict(eval_batch_size=32)},
))
