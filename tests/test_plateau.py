"""plateau_patience's meaning: fer-bench runs PyTorch's ReduceLROnPlateau, which cuts after plateau_patience + 1
epochs without improvement; Keras' ReduceLROnPlateau(patience=p) cuts after p, i.e. plateau_patience = p - 1."""

import numpy as np
import pytest
import torch

from fer_bench.config import DEFAULTS, KEYS
from fer_bench.training import _plateau


def cut_epochs(cfg: dict, values) -> list[int]:
    """The 1-based epochs after which fer-bench's plateau schedule for ``cfg`` cuts the lr, given one monitored value
    per epoch (the schedule steps once per epoch on it, as Lightning does)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = _plateau(opt, {**DEFAULTS, "scheduler": "plateau", **cfg})["scheduler"]
    cuts = []
    for epoch, v in enumerate(values, 1):
        before = opt.param_groups[0]["lr"]
        sched.step(v)
        if opt.param_groups[0]["lr"] < before:
            cuts.append(epoch)
    return cuts


def keras_cut_epochs(values, patience: int = 10, min_delta: float = 1e-4) -> list[int]:
    """keras.callbacks.ReduceLROnPlateau(monitor='val_loss', patience, min_delta, cooldown=0) on_epoch_end: an
    improvement is below best - min_delta and resets ``wait``; otherwise wait += 1 and the lr is cut when
    wait >= patience (then wait = 0)."""
    best, wait, cuts = np.inf, 0, []
    for epoch, v in enumerate(values, 1):
        if v < best - min_delta:
            best, wait = v, 0
        else:
            wait += 1
            if wait >= patience:
                cuts.append(epoch)
                wait = 0
    return cuts


def test_patience_10_cuts_after_the_11th_epoch_without_improvement():
    flat = [1.0] * 30  # epoch 1 sets the best; epochs 2.. do not improve
    assert cut_epochs({"plateau_patience": 10}, flat) == [12, 23]  # 11 epochs without improvement, then 11 more
    assert keras_cut_epochs(flat, patience=10) == [11, 21]  # Keras: after the 10th
    assert "plateau_patience + 1" in KEYS["plateau_patience"].doc and "p - 1" in KEYS["plateau_patience"].doc


@pytest.mark.parametrize("seed", range(5))
def test_keras_patience_p_is_plateau_patience_p_minus_1(seed):
    """On noisy, slowly improving losses the two rules cut at the same epochs (gaps well above both thresholds).
    Compared over the first four cuts: from lr 1e-3 PyTorch stops cutting once a cut would change the lr by less than
    its eps (1e-8), Keras (min_lr=0) never does."""
    rng = np.random.default_rng(seed)
    losses = (2.0 * np.exp(-np.arange(100) / 30) + rng.normal(0, 0.05, 100)).round(3).tolist()
    for p in (3, 5, 10):
        assert cut_epochs({"plateau_patience": p - 1}, losses)[:4] == keras_cut_epochs(losses, p)[:4]
