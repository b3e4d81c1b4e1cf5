"""fer_bench.training's execution on a GPU (issue 30), checked on the CPU: the epoch's order moved once to the data's
device (the batches of before, indexed there), fused optimisers with the same update, no host copy per training
step, compile_mode with its eager fallback, and the GPU's checkpoint cadence."""

import types

import pytest
import torch
from torch import nn

from conftest import write_csv
from fer_bench import config, training
from fer_bench.training import FERClassifier, _Batches, fused_kwargs, optimizers


def _todays_batches(n, bs, seed, epoch, rank=0, world=1):
    """The order before issue 30, written out: randperm on a CPU generator seeded (seed, epoch), equal shares."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    idx = torch.randperm(n, generator=g)
    idx = idx[: n - n % world][rank::world]
    return list(idx[: len(idx) - len(idx) % bs].split(bs))


@pytest.mark.parametrize("seed, epoch, rank, world", [(0, 0, 0, 1), (1, 3, 0, 1), (7, 5, 1, 2), (123, 29, 0, 2)])
def test_the_epoch_order_is_todays_cpu_permutation_moved_once_to_the_data_device(seed, epoch, rank, world):
    expected = _todays_batches(103, 8, seed, epoch, rank, world)
    cpu = list(_Batches(103, 8, True, seed, rank, world, epoch_fn=lambda: epoch))
    assert len(cpu) == len(expected) and all(torch.equal(a, b) for a, b in zip(cpu, expected))
    # on another device (meta stands for a GPU here): the same shapes, every batch a view of one tensor moved there
    meta = list(_Batches(103, 8, True, seed, rank, world, epoch_fn=lambda: epoch,
                         device_fn=lambda: torch.device("meta")))
    assert [b.device.type for b in meta] == ["meta"] * len(expected)
    assert [b.shape for b in meta] == [b.shape for b in expected]
    assert len({id(b._base) for b in meta}) == 1 and meta[0]._base is not None  # one copy per epoch, not per step


@pytest.mark.parametrize("seed, epoch, done", [(0, 1, 3), (5, 7, 1), (2, 0, 11)])
def test_a_resumed_epoch_continues_todays_order_on_the_device(seed, epoch, done):
    expected = _todays_batches(100, 8, seed, epoch)[done:]
    for device in ("cpu", "meta"):
        s = _Batches(100, 8, True, seed, 0, 1, epoch_fn=lambda: epoch, device_fn=lambda: torch.device(device))
        s.load_state_dict({"epoch": epoch, "done": done})
        got = list(s)
        assert len(got) == len(expected) and all(b.device.type == device for b in got)
        if device == "cpu":
            assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_the_real_loader_indexes_with_tensors_on_the_data_device(tmp_path, monkeypatch):
    """Through FERDataModule's own loaders: the index tensors are on the images' device (meta stands for a GPU)."""
    path = tmp_path / "fer2013.csv"
    write_csv(path, per_class=4)
    cfg = config.resolve(__import__("papers").get_paper("rodrigues_cnn"), "cnn8", "smoke",
                         overrides=["batch_size=4", "eval_batch_size=8"])
    dm = training.FERDataModule(str(path), cfg, seed=3)
    dm.setup()
    cpu_batches = [b[1] for b in dm.train_dataloader()]
    for ds in (dm.train_set, dm.val_set):
        ds.images, ds.labels = ds.images.to("meta"), ds.labels.to("meta")
    seen = []
    original = training._TensorBatches.__getitem__
    monkeypatch.setattr(training._TensorBatches, "__getitem__",
                        lambda self, idx: (seen.append(idx.device.type), original(self, idx))[1])
    train = list(dm.train_dataloader())
    val = list(dm.val_dataloader())
    assert seen == ["meta"] * (len(train) + len(val)) and len(train) == len(cpu_batches) == 28 // 4
    assert all(x.device.type == "meta" and x.shape == (4, 48, 48) for x, _ in train)


def test_optimizers_run_fused_on_a_gpu_only():
    cuda, cpu = types.SimpleNamespace(device=torch.device("cuda", 0)), types.SimpleNamespace(device=torch.device("cpu"))
    assert fused_kwargs([cuda, cuda]) == {"fused": True}
    assert fused_kwargs([cpu]) == {} and fused_kwargs([cuda, cpu]) == {} and fused_kwargs([]) == {}
    for name in ("sgd", "adam", "adamw"):
        opt = optimizers(nn.Linear(3, 2).parameters(), {**config.DEFAULTS, "optimizer": name})
        assert not opt.defaults.get("fused") and opt.defaults.get("foreach") is None  # the CPU's kernels of before


@pytest.mark.parametrize("name, extra", [("sgd", dict(nesterov=True, weight_decay=5e-4, lr=0.05)),
                                         ("adam", dict(weight_decay=1e-4)), ("adamw", dict(weight_decay=0.01))])
def test_the_fused_update_is_the_same_update(name, extra):
    """The fused kernels (run here on the CPU, where PyTorch has them too) apply the recipe's update rule with the same
    hyper-parameters: 5 steps agree with the for-loop optimiser within float tolerance."""
    cfg = {**config.DEFAULTS, "optimizer": name, **extra}
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 7))
    b = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 7))
    b.load_state_dict(a.state_dict())
    opt_a = training.OPTIMIZERS[name](list(a.parameters()), cfg)
    opt_b = training.OPTIMIZERS[name](list(b.parameters()), cfg, fused=True)
    for step in range(5):
        x, y = torch.randn(8, 6), torch.randint(0, 7, (8,))
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 7))

    def forward(self, x):
        return self.body(x)


def _batch(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 12, 12, generator=g), torch.randint(0, 7, (n,), generator=g)


def test_a_training_step_copies_no_number_from_the_host(monkeypatch):
    """Every number a step makes stays on the loss's device: torchmetrics turned the batch size (a Python int) into a
    tensor there at every step, a blocking host-to-GPU copy."""
    module = FERClassifier(_Tiny(), {**config.DEFAULTS})
    made = []
    for name in ("as_tensor", "tensor"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda data, *a, _real=real, **k: (
            made.append(data) if not isinstance(data, torch.Tensor) else None, _real(data, *a, **k))[1])
    loss = module.training_step(_batch(), 0)
    assert made == []
    # the epoch mean got the step's loss (nan_strategy="disable" weighs every batch alike: training batches are equal)
    assert float(module.train_loss_epoch.compute()) == pytest.approx(float(loss))


def test_compile_mode_is_an_execution_key_that_renames_no_run():
    from papers import get_paper
    assert "compile_mode" in config.NEUTRAL and config.CHOICES["compile_mode"] == ("none", "default", "reduce-overhead")
    paper = get_paper("du_resnet_fc")
    assert "compile_mode" not in config.resolve(paper, "resnet50")  # at its default: not in the hashed recipe
    assert "compile_mode" not in config.resolve(paper, "resnet50", overrides=["compile_mode=none"])
    cfg = config.resolve(paper, "resnet50", overrides=["compile_mode=reduce-overhead"])
    assert cfg["compile_mode"] == "reduce-overhead"
    assert config.budget(paper, "resnet50", "paper", cfg, cfg["epochs"]) == {"full": True, "reasons": []}
    assert training.compile_mode(cfg) == "reduce-overhead" and training.compile_mode({"compile": True}) == "default"
    assert training.compile_mode({}) == "none"


def _steps(module, steps=3):
    torch.manual_seed(11)
    module.setup("fit")
    opt = optimizers(module.parameters(), module.cfg)
    losses = []
    for i in range(steps):
        loss = module.training_step(_batch(i), i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    module.eval()
    with torch.no_grad():
        logits = module._call(module.predict_logits, _batch(9, n=5)[0])
    return torch.stack(losses), logits, [p.detach().clone() for p in module.parameters()]


def test_the_compiled_network_gives_the_eager_numbers_on_the_cpu():
    """compile_mode=default through inductor's C++ kernels on this CPU: training steps, the parameters after them and
    the evaluation logits agree with eager execution within float tolerance (dropout included: inductor draws eager's
    random numbers, fallback_random)."""
    torch.manual_seed(0)
    eager_net = _Tiny()
    compiled_net = _Tiny()
    compiled_net.load_state_dict(eager_net.state_dict())
    # SGD: a float-order difference in a near-zero gradient stays that small (Adam's normalised step magnifies it)
    cfg = {**config.DEFAULTS, "channels_last": False, "optimizer": "sgd", "lr": 0.05}
    eager = FERClassifier(eager_net, cfg)
    compiled = FERClassifier(compiled_net, {**cfg, "compile_mode": "default"})
    e, c = _steps(eager), _steps(compiled)
    assert compiled.execution == {"compile_mode": "default", "compiled": True, "fallback": None}
    assert eager.execution == {"compile_mode": "none", "compiled": False, "fallback": None}
    for a, b in zip(e[:2], c[:2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for p, q in zip(e[2], c[2]):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_a_network_that_cannot_be_compiled_trains_eagerly_with_the_reason(monkeypatch):
    def refuse(gm, example_inputs):
        raise RuntimeError("cannot capture this network")

    monkeypatch.setitem(training.COMPILE_MODES, "default", {"backend": refuse})
    torch.manual_seed(0)
    a, b = _Tiny(), _Tiny()
    b.load_state_dict(a.state_dict())
    eager = _steps(FERClassifier(a, {**config.DEFAULTS, "channels_last": False}))
    module = FERClassifier(b, {**config.DEFAULTS, "channels_last": False, "compile_mode": "default"})
    with pytest.warns(UserWarning, match="could not be compiled"):
        fell_back = _steps(module)
    assert module.execution["compiled"] is False and "cannot capture this network" in module.execution["fallback"]
    # the failed call is repeated with the random state it began with: dropout draws what the eager run drew
    assert torch.equal(eager[0], fell_back[0]) and torch.equal(eager[1], fell_back[1])
    assert all(torch.equal(p, q) for p, q in zip(eager[2], fell_back[2]))


def test_execution_settings_change_on_a_gpu_only(monkeypatch):
    from fer_bench import runner
    cpu = runner.execution("cpu", deterministic=False)
    assert cpu == {"benchmark": None, "log_every_n_steps": 10, "checkpoint_every_epoch": True}  # as before
    gpu = runner.execution("gpu", deterministic=False)
    assert gpu == {"benchmark": True, "log_every_n_steps": 50, "checkpoint_every_epoch": False}
    assert runner.execution("cuda", deterministic=True)["benchmark"] is False  # --deterministic: no cudnn autotuning
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runner.execution("auto", deterministic=False)["benchmark"] is True


@pytest.mark.parametrize("gpu", [False, True])
def test_last_checkpoint_every_epoch_on_a_cpu_and_at_the_end_on_a_gpu(tmp_path, monkeypatch, gpu):
    """A 3-epoch run: last.ckpt at each epoch's end on a CPU (as before); with the GPU's cadence (here on the CPU) once,
    at the end, when no --checkpoint-minutes interval passed. Both end with the same numbers, last_epoch included."""
    from fer_bench import callbacks, runner
    if gpu:
        monkeypatch.setattr(runner, "execution", lambda accelerator, deterministic: {
            "benchmark": None, "log_every_n_steps": 50, "checkpoint_every_epoch": False})
    saves = []
    real = callbacks.AtomicCheckpointIO.save_checkpoint
    monkeypatch.setattr(callbacks.AtomicCheckpointIO, "save_checkpoint",
                        lambda self, ckpt, path, *a, **k: (saves.append((str(path).rsplit("/", 1)[1], ckpt["epoch"])),
                                                           real(self, ckpt, path, *a, **k))[1])
    data = tmp_path / "fer2013.csv"
    write_csv(data, per_class=4)
    (path,) = runner.run("rodrigues_cnn", "cnn8", "smoke", seed=0, data=data, out=tmp_path / "out", epochs=3,
                         accelerator="cpu", overrides=["batch_size=7", "eval_batch_size=14", "train_subset=0"],
                         deterministic=True, progress=False, checkpoint_every_s=None)
    last = [epoch for name, epoch in saves if name == "last.ckpt"]
    assert last == ([2] if gpu else [0, 1, 2])
    m = __import__("json").loads(path.read_text())
    assert m["status"] == "completed" and m["last_epoch"]["epoch"] == 3
    assert m["execution"] == {"compile_mode": "none", "compiled": False, "fallback": None, "cudnn_benchmark": False,
                              "checkpoint_every_epoch": not gpu}
    _SPLITS[gpu] = m["splits"]
    if len(_SPLITS) == 2:  # both cadences ran: the same numbers
        assert _SPLITS[True] == _SPLITS[False]


_SPLITS: dict = {}
