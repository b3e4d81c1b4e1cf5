"""The recipe: typed keys in groups, profiles, resolution in one place, and ``--set key=value`` overrides.

A recipe is a flat dict of plain values (bool, int, float, str), the form metrics.json and run.json record and
`fer-bench reproduce` hashes to find a run again. Every key is declared once in ``KEYS`` with its type (that of
its default), its choices and its group:

- ``paper``: what the paper trains and evaluates (data, augmentation, optimisation, model, selection);
  a run that changes one is a variant of the paper's recipe, with a reduced budget;
- ``protocol``: which images train, select and report, and the test-time views; the report keeps each
  protocol apart as a group of its own, so they never reduce a budget;
- ``execution``: how this run executes the recipe (memory layout, batching of evaluation, compilation,
  an extra evaluation); they change no result beyond floating-point order;
- ``budget``: what cuts the budget (training/validation subsets): set by profiles, never by papers.

A resolved recipe layers, last wins: ``DEFAULTS`` < the paper's recipe < the model's < the paper's
recipe for the dataset (``Paper.datasets``) < the profile (``PROFILES``, then the paper's own) < ``--epochs``
and ``--set``. ``resolve`` is that one place; ``budget`` and ``variant`` compare a recipe with the paper's.
"""

from __future__ import annotations

import difflib

from dataclasses import dataclass

from .errors import UserError

DATASETS = ("fer2013", "jaffe")
GROUPS = ("paper", "protocol", "execution", "budget")


@dataclass(frozen=True)
class Key:
    default: bool | int | float | str  # its type is the key's type
    group: str  # one of GROUPS
    doc: str = ""
    choices: tuple = ()
    meanings: tuple = ()  # (choice, what it does) for choices whose name does not say it

    def meaning(self, value) -> str:
        """What ``value`` of this key does, when its choices are documented ('' otherwise)."""
        return dict(self.meanings).get(value, "")


def _keys(group: str, **keys) -> dict[str, Key]:
    """name=default or name=(default, doc[, choices]) -> Keys of one group. ``choices`` may be a dict
    {choice: what it does}: the values are the choices, the texts their meanings (shown by `fer-bench list --json`
    and named in the key's doc)."""
    def key(v) -> Key:
        if not isinstance(v, tuple):
            return Key(v, group)
        if len(v) > 2 and isinstance(v[2], dict):
            meanings = tuple(v[2].items())
            return Key(v[0], group, v[1] + "; ".join(f"{c}: {m}" for c, m in meanings), tuple(v[2]), meanings)
        return Key(v[0], group, *v[1:])

    return {k: key(v) for k, v in keys.items()}


KEYS: dict[str, Key] = {
    # data: what the network sees
    **_keys("paper",
            input_size=(48, "side of the square input after resizing"),
            channels=(1, "1 = grayscale, 3 = gray replicated for RGB backbones"),
            normalize=("dataset", "how pixels are scaled after dividing by 255 (every choice does that first): ",
                       {"dataset": "(x - mean) / std with the mean and std of the Training images (never of test)",
                        "imagenet": "(x - mean) / std with ImageNet's statistics of the gray image",
                        "half": "(x - 0.5) / 0.5, pixels in [-1, 1]",
                        "none": "pixels / 255 and nothing more, in [0, 1] (Keras' rescale=1./255, torchvision's "
                                "ToTensor)"}),
            crop_size=(0, ">0: the network sees crop_size x crop_size crops (center crop to evaluate)"),
            train_views=("one", "one: one view per image (a random crop with crop_size); tencrop: all ten crops",
                         ("one", "tencrop")),
            # augmentation, per image on whole batches (fer_bench.augment)
            aug_hflip=False,
            aug_rotation=(0.0, "+- degrees"),
            aug_scale=(0.0, "zoom 1 +- this"),
            aug_translate=(0.0, "+- fraction of the side"),
            aug_shear=(0.0, "+- degrees"),
            aug_affine_p=(1.0, "probability that an image gets the affine warp"),
            aug_erasing=(0.0, "probability of random erasing"),
            aug_resized_crop_min=(0.0, ">0: RandomResizedCrop, area fraction in [min, max], ratio 3/4-4/3"),
            aug_resized_crop_max=1.0,
            aug_rotation_p=(0.0, ">0: rotation drawn on its own with this probability (else in the affine warp)"),
            # optimisation
            epochs=1,
            batch_size=64,
            optimizer=("adam", "", ("adam", "adamw", "sgd")),
            lr=1e-3,
            weight_decay=0.0,
            momentum=(0.9, "sgd only"),
            nesterov=(False, "sgd only"),
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_eps=1e-8,
            scheduler=("none", "", ("none", "plateau", "step", "cosine")),
            plateau_monitor=("val/loss", "", ("val/loss", "val/acc")),
            plateau_factor=0.1,
            plateau_patience=(10, "plateau: multiply lr by plateau_factor after plateau_patience + 1 epochs in a row "
                                  "without improvement (PyTorch's ReduceLROnPlateau: patience=10 cuts after the "
                                  "11th; Keras' ReduceLROnPlateau(patience=p) cuts after the p-th, i.e. p - 1 here)"),
            step_size=(1, "step: multiply lr by step_gamma every step_size epochs ..."),
            step_gamma=0.1,
            lr_hold=(0, "... after holding it constant for lr_hold epochs"),
            label_smoothing=0.0,
            # model
            pretrained=(False, "ImageNet weights through torchvision (needs the network once)"),
            # selection and evaluation
            monitor=("val/acc", "the selection-split metric that selects the checkpoint", ("val/acc", "val/loss")),
            tta_average=("softmax", "how tta's views are combined: softmax (mean probabilities) or logits",
                         ("softmax", "logits")),
            eval_fp32=(False, "validate and test in fp32 even when --precision autocasts training"),
            # the sizes of protocol=paper's subsets: a change trains on other images, so it is a recipe change
            paper_train_size=(0, "protocol=paper: train on this many Training images (seeded); 0 = all"),
            paper_test_size=(0, "protocol=paper: select on and report this many PrivateTest images; 0 = all")),
    **_keys("protocol",
            protocol=("canonical", "canonical: train Training, select on PublicTest, report PrivateTest (+PublicTest); "
                                   "paper: the paper's own split, selecting on the reported test images",
                      ("canonical", "paper")),
            split_seed=(0, "seed of protocol=paper's subsets and of cross-validation folds (--folds)"),
            folds_by=("expression", "--folds: stratified by expression, or subject-independent",
                      ("expression", "subject")),
            tta=("none", "test-time views, averaged as tta_average says (fer_bench.tta)", ("none", "hflip", "tencrop"))),
    **_keys("execution",
            eval_batch_size=64,
            channels_last=(True, "NHWC memory layout"),
            compile=(False, "torch.compile the network (nn.Module.compile: checkpoints keep their keys)"),
            compile_mode=("none", "how the network is compiled (nn.Module.compile; a network that cannot be is "
                                  "trained eagerly, and metrics.json's execution says why): ",
                          {"none": "eager (compile=true means default)",
                           "default": "torch.compile's default mode (inductor kernels)",
                           "reduce-overhead": "inductor kernels replayed as CUDA graphs on a GPU: one launch for "
                                              "the step's ~1,000 kernels"}),
            exclude_leaked=(False, "FER-2013: also evaluate on the test images without an exact or near duplicate "
                                   "in Training (fer_bench.data_audit), as extra splits <split>_unleaked")),
    **_keys("budget",
            train_subset=(0, ">0: train on this many Training images (a seeded slice); profiles only"),
            val_subset=(0, ">0: validate on this many PublicTest images during training; profiles only")),
}
DEFAULTS: dict = {k: key.default for k, key in KEYS.items()}
# keys added after run directories were named after the resolved recipe: ``resolve`` leaves one out while it is at its
# default (a recipe that lacks a key counts it at its default), so no committed or running run changes its name
IMPLICIT = frozenset({"compile_mode"})
CHOICES: dict = {k: key.choices for k, key in KEYS.items() if key.choices}
# keys that change neither what is trained nor its budget: a run that changes them is still the paper's recipe
NEUTRAL = frozenset(k for k, key in KEYS.items() if key.group in ("protocol", "execution"))
# keys that change only how a run executes (layout, compilation, evaluation batch, extra evaluated subsets)
EXECUTION = frozenset(k for k, key in KEYS.items() if key.group == "execution")

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
            near = difflib.get_close_matches(key, cfg, n=3, cutoff=0.5)
            hint = "; ".join(f"{k} ({KEYS[k].doc})" if k in KEYS and KEYS[k].doc else k for k in near)
            raise UserError(f"--set {key}: unknown key for this recipe."
                            + (f" Did you mean: {hint}?" if near else "") + f" Valid keys: {', '.join(sorted(cfg))}.")
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


def resolve(paper, model: str, profile: str = "paper", dataset: str = "fer2013", epochs: int | None = None,
            overrides=()) -> dict:
    """The recipe one run trains: ``paper.resolve`` (defaults, paper, model, dataset, profile), then ``--epochs``
    and ``--set`` overrides, type- and range-checked (UserError before anything is created)."""
    cfg = paper.resolve(model, profile, dataset)
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs {epochs}: give at least 1 epoch.")
        cfg["epochs"] = epochs
    cfg = apply_overrides(cfg, list(overrides))
    check_ranges(cfg)
    return {k: v for k, v in cfg.items() if not (k in IMPLICIT and v == DEFAULTS[k])}


def _changed(cfg: dict, reference: dict) -> list[str]:
    """The keys (outside NEUTRAL) whose value in ``cfg`` differs from ``reference``; a key one lacks counts at its
    default (keys added later default to the behaviour from before they existed)."""
    return [k for k in sorted(set(cfg) | set(reference)) if k not in NEUTRAL
            and cfg.get(k, DEFAULTS.get(k)) != reference.get(k, DEFAULTS.get(k))]


def budget(paper, model: str, profile: str, cfg: dict, epochs_completed: int, dataset: str = "fer2013") -> dict:
    """Whether a run had the paper's full recipe and budget, and the reasons when it did not: a profile other than
    'paper', every key outside NEUTRAL that differs from the paper's recipe (a narrower network or fewer epochs
    alike), and epochs not completed. The runner records it; the report recomputes it from the recorded recipe."""
    full_cfg = paper.resolve(model, "paper", dataset)
    reasons = [f"profile {profile}"] if profile != "paper" else []
    reasons += [f"{k}={cfg.get(k, DEFAULTS.get(k))} (paper: {full_cfg.get(k, DEFAULTS.get(k))})"
                for k in _changed(cfg, full_cfg)]
    if epochs_completed < cfg.get("epochs", 1):
        reasons.append(f"stopped after {epochs_completed} of {cfg.get('epochs')} epochs")
    return {"full": not reasons, "reasons": reasons}


def variant(paper, model: str, profile: str, cfg: dict, dataset: str = "fer2013") -> str:
    """The recipe changes (``--set``, ``--epochs``) of a run against the paper's recipe for its profile, outside
    NEUTRAL: runs with the same variant are repeats of one recipe (seeds), the report's unit of pooling."""
    ref = paper.resolve(model, profile, dataset)
    return ", ".join(f"{k}={cfg.get(k, DEFAULTS.get(k))}" for k in _changed(cfg, ref))


def same_recipe(recorded: dict, current: dict, ignore: frozenset = frozenset()) -> bool:
    """Whether a recorded recipe is the current one (every key, NEUTRAL ones included, except those in ``ignore``).
    A key one of them lacks counts at its default."""
    if not recorded:
        return False
    return all(recorded.get(k, DEFAULTS.get(k)) == current.get(k, DEFAULTS.get(k))
               for k in (set(recorded) | set(current)) - ignore)
