"""Recipe keys every paper shares, profiles, and type-checked ``--set key=value`` overrides.

A recipe is a flat dict of plain values (bool, int, float, str). A paper's recipe starts from
DEFAULTS, may add keys of its own, and each model may override some; a profile then
overrides the result, and the command line comes last.
"""

from __future__ import annotations

from .errors import UserError

DATASETS = ("fer2013", "jaffe")  # a recipe key "DATASET.KEY" (e.g. "jaffe.epochs") sets KEY on that dataset only

DEFAULTS: dict = dict(
    # data: what the network sees
    input_size=48,  # side of the square input after resizing
    channels=1,  # 1 = grayscale, 3 = gray replicated for RGB backbones
    normalize="dataset",  # dataset: mean/std of Training; imagenet: ImageNet stats of the gray image; half: (x-0.5)/0.5
    train_subset=0,  # >0: train on this many Training images (a seeded random slice); profiles only
    val_subset=0,  # >0: validate on this many PublicTest images during training; profiles only
    # augmentation, applied per image on whole batches (fer_bench.augment)
    aug_hflip=False,
    aug_rotation=0.0,  # +- degrees
    aug_scale=0.0,  # zoom 1 +- this
    aug_translate=0.0,  # +- fraction of the side
    aug_shear=0.0,  # +- degrees
    aug_affine_p=1.0,  # probability that an image gets the affine warp
    aug_erasing=0.0,  # probability of random erasing
    aug_resized_crop_min=0.0,  # >0: RandomResizedCrop per image, area fraction in [min, max], ratio 3/4-4/3, same size
    aug_resized_crop_max=1.0,
    aug_rotation_p=0.0,  # >0: rotation drawn on its own with this probability (else inside the aug_affine_p warp)
    crop_size=0,  # >0: the network sees crop_size x crop_size crops of the input_size image (center crop to evaluate)
    train_views="one",  # one: one view per image (a random crop with crop_size); tencrop: all ten crops, each a sample
    # optimisation
    epochs=1,
    batch_size=64,
    eval_batch_size=64,
    channels_last=True,  # NHWC memory layout: 1.45x eval, 1.1x train for ResNet50-FPN on the 2-core CI CPU
    compile=False,  # torch.compile the network (nn.Module.compile: checkpoints keep their keys)
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    momentum=0.9,  # sgd only
    nesterov=False,  # sgd only
    adam_beta1=0.9,
    adam_beta2=0.999,
    adam_eps=1e-8,
    scheduler="none",
    plateau_monitor="val/loss",
    plateau_factor=0.1,
    plateau_patience=10,
    step_size=1,  # step: multiply lr by step_gamma every step_size epochs ...
    step_gamma=0.1,
    lr_hold=0,  # ... after holding it constant for lr_hold epochs
    label_smoothing=0.0,
    # model
    pretrained=False,  # ImageNet weights through torchvision/timm (needs the network once)
    # checkpoint selection and evaluation
    monitor="val/acc",  # PublicTest metric that selects the checkpoint
    protocol="canonical",  # canonical: train Training, select on PublicTest, report PrivateTest (+PublicTest)
    # protocol=paper: the paper's own split, selecting on the reported test images (recorded as such)
    paper_train_size=0,  # train on this many Training images (seeded by split_seed); 0 = all
    paper_test_size=0,  # select on and report this many PrivateTest images (seeded); 0 = all
    split_seed=0,  # seed of protocol=paper's subsets and of cross-validation folds (--folds)
    folds_by="expression",  # --folds: expression (stratified) or subject (subject-independent)
    tta="none",
    tta_average="softmax",  # how tta's views are combined: softmax (mean probabilities) or logits (mean raw outputs)
    eval_fp32=False,  # validate and test in fp32 even when --precision autocasts training (*-mixed precisions)
    # FER-2013 only: also evaluate on the test images that have no exact or near duplicate in Training
    # (fer_bench.data_audit), reported as extra splits "<split>_unleaked"
    exclude_leaked=False,
)

CHOICES = {
    "normalize": ("dataset", "imagenet", "half", "none"),
    "optimizer": ("adam", "adamw", "sgd"),
    "scheduler": ("none", "plateau", "step", "cosine"),
    "plateau_monitor": ("val/loss", "val/acc"),
    "monitor": ("val/acc", "val/loss"),
    "protocol": ("canonical", "paper"),
    "folds_by": ("expression", "subject"),
    "tta": ("none", "hflip", "tencrop"),  # test-time views, averaged as tta_average says (fer_bench.tta)
    "tta_average": ("softmax", "logits"),
    "train_views": ("one", "tencrop"),
}

# profile name -> overrides. "paper" is the recipe as written; the others cut its budget.
PROFILES: dict[str, dict] = {
    "paper": {},
    # about a minute: one epoch on a 512-image training slice, then the full PublicTest/PrivateTest
    "smoke": dict(epochs=1, train_subset=512, val_subset=512, batch_size=32),
}

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def parse_value(key: str, text: str, current):
    """Parse ``text`` as the type of ``current``; raise UserError on a mismatch."""
    try:
        if isinstance(current, bool):
            if text.lower() not in _TRUE | _FALSE:
                raise ValueError
            value = text.lower() in _TRUE
        elif isinstance(current, int):
            value = int(text)
        elif isinstance(current, float):
            value = float(text)
        else:
            value = text
    except ValueError:
        raise UserError(f"--set {key}={text}: {key} takes a {type(current).__name__} "
                        f"(its current value is {current!r}).") from None
    if key in CHOICES and value not in CHOICES[key]:
        raise UserError(f"--set {key}={text}: choose one of {', '.join(CHOICES[key])}.")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise UserError(f"--set {key}={text}: {key} cannot be negative.")
    return value


def apply_overrides(cfg: dict, pairs: list[str]) -> dict:
    """Apply ``key=value`` strings to a resolved recipe; unknown keys and bad values are errors."""
    cfg = dict(cfg)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {pair!r}: write overrides as key=value, e.g. --set lr=0.01.")
        if key not in cfg:
            raise UserError(f"--set {key}: unknown key for this recipe. Valid keys: {', '.join(sorted(cfg))}.")
        cfg[key] = parse_value(key, text.strip(), cfg[key])
    return cfg


# ranges every resolved recipe must respect: (key, low, high, what), bounds inclusive unless noted in ``what``
_POSITIVE_INT = ("input_size", "batch_size", "eval_batch_size", "epochs", "step_size")
_PROBABILITIES = ("aug_affine_p", "aug_erasing", "aug_rotation_p")  # crop area fractions may exceed 1 (usef-kh: 1.2)


def check_ranges(cfg: dict) -> None:
    """Values that parse but cannot train (batch_size=0, lr=nan, a probability of 2, ...): a UserError naming the
    key, raised when the recipe is resolved, before any run directory exists."""
    def bad(key, why):
        raise UserError(f"--set {key}={cfg[key]}: {why}.")

    for key, value in cfg.items():
        if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
            bad(key, "give a finite number")
    for key in _POSITIVE_INT:
        if key in cfg and cfg[key] < 1:
            bad(key, "give at least 1")
    for key in _PROBABILITIES:
        if key in cfg and not 0 <= cfg[key] <= 1:
            bad(key, "a probability or fraction lies in [0, 1]")
    if cfg.get("aug_resized_crop_min", 0) > cfg.get("aug_resized_crop_max", 1):
        bad("aug_resized_crop_min", f"the crop range needs min <= max ({cfg['aug_resized_crop_max']})")
    if cfg.get("channels") not in (1, 3):
        bad("channels", "1 (grayscale) or 3 (gray replicated for RGB networks)")
    if not 0 <= cfg.get("label_smoothing", 0) < 1:
        bad("label_smoothing", "label smoothing lies in [0, 1)")
    for key in ("adam_beta1", "adam_beta2", "momentum"):
        if key in cfg and not 0 <= cfg[key] < 1:
            bad(key, "it lies in [0, 1)")
    if cfg.get("lr", 1) <= 0:
        bad("lr", "give a positive learning rate")
    if cfg.get("scheduler") == "plateau" and not 0 < cfg.get("plateau_factor", 0.1) < 1:
        bad("plateau_factor", "the plateau factor lies in (0, 1)")
    if cfg.get("crop_size", 0) > cfg.get("input_size", 48):
        bad("crop_size", f"a crop cannot be larger than the input ({cfg['input_size']})")


def same_recipe(recorded: dict, current: dict) -> bool:
    """Whether a recorded recipe is the current one. A key one of them lacks counts at its default value: keys added
    to fer_bench.config.DEFAULTS later default to the behaviour from before they existed."""
    if not recorded:
        return False
    return all(recorded.get(k, DEFAULTS.get(k)) == current.get(k, DEFAULTS.get(k)) for k in set(recorded) | set(current))
