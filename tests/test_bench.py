"""`fer-bench bench`: it runs a few steps of each pipeline and writes its CSV; timings themselves are not tested."""

import csv

import pytest
import torch
import torchvision

from conftest import cli, write_csv, write_folder
from fer_bench.cli import main
from fer_bench.runner import default_precision
from fer_bench.bench import COLUMNS, PIPELINES, _Clock, _median, conventional_transforms, step_costs, views_per_image
from papers import get_paper
from fer_bench.runner import resolve_config
from fer_bench.training import FERClassifier

TINY = ["--paper", "miao_presnet_vgg", "--model", "presnet", "--steps", "2", "--warmup", "1", "--rounds", "1",
        "--batch-size", "8", "--set", "eval_batch_size=8", "--workers", "0"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench") / "fer2013"
    write_folder(root, per_class=4)  # 28 images per split: 3 batches of 8 need 24
    return root


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_bench_times_three_pipelines_and_writes_one_row(folder, tmp_path):
    r = cli("bench", *TINY, "--data", str(folder), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    with open(tmp_path / "bench.csv", newline="") as f:
        assert next(csv.reader(f)) == COLUMNS
    (row,) = _rows(tmp_path / "bench.csv")
    assert (row["paper"], row["model"], row["batch_size"], row["eval_batch_size"], row["steps"], row["rounds"]) == (
        "miao_presnet_vgg", "presnet", "8", "8", "2", "1")
    # the machine's default: bf16-mixed on a CPU with native bf16, 32-true on others
    assert (row["input_size"], row["channels"], row["views_per_image"], row["precision"]) == (
        "48", "1", "1", default_precision("cpu"))
    rates = {f"{p}_{phase}": float(row[f"{p}_{phase}_img_s"]) for p in PIPELINES for phase in ("train", "eval")}
    assert all(v > 0 for v in rates.values()), rates
    for phase in ("train", "eval"):
        for other in ("pure", "conventional"):
            assert float(row[f"{phase}_ratio_fer_bench_to_{other}"]) == pytest.approx(
                rates[f"fer_bench_{phase}"] / rates[f"{other}_{phase}"], rel=2e-3)  # CSV keeps 4 digits
    assert float(row["pure_train_gflop_s"]) == pytest.approx(
        rates["pure_train"] * float(row["train_gflop_per_img"]), rel=2e-3)
    assert row["torch"] == torch.__version__ and row["accelerator"] == "cpu" and row["data_format"] == "folder"
    assert float(row["augment_img_s"]) > 0 and row["cold_load_s"] == ""  # load timings only with --data-timings
    assert "fer_bench/pure" in r.stdout and "GFLOP/s" in r.stdout


def test_bench_can_time_the_dataset_load_and_skip_pipelines_and_appends_rows(folder, tmp_path):
    for _ in range(2):
        r = cli("bench", *TINY, "--pipelines", "pure", "--data-timings", "--data", str(folder), "--out",
                str(tmp_path))
        assert r.returncode == 0, r.stderr[-2000:]
    first, row = _rows(tmp_path / "bench.csv")
    assert first["model"] == row["model"] == "presnet"
    assert float(row["cold_load_s"]) > 0 and float(row["cached_load_s"]) > 0
    assert float(row["pure_train_img_s"]) > 0 and row["fer_bench_train_img_s"] == row["conventional_eval_img_s"] == ""
    assert row["train_ratio_fer_bench_to_pure"] == ""


@pytest.mark.parametrize("args, message", [
    (["--pipelines", "pure,fast"], "--pipelines"),
    (["--steps", "0"], "--steps"),
    (["--rounds", "0"], "--rounds"),
    (["--precision", "fp8"], "--precision"),
    (["--set", "epochs=many"], "epochs"),
    (["--steps", "50"], "lower --steps"),  # 51 batches of 8 from 28 images
    (["--model", "resnet9"], "resnet9"),
])
def test_bench_bad_input_exits_2(folder, tmp_path, capsys, args, message):
    assert main(["bench", *TINY, *args, "--data", str(folder), "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bench.csv").exists()


def test_conventional_pipeline_needs_the_image_folder_release(tmp_path):
    write_csv(tmp_path / "fer2013.csv", per_class=4)
    r = cli("bench", *TINY, "--data", str(tmp_path / "fer2013.csv"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "image-folder release" in r.stderr and "Traceback" not in r.stderr


def test_step_costs_count_every_view():
    paper = get_paper("nurmakhan_vgg")
    cfg = resolve_config("nurmakhan_vgg", "vggnet", "paper", None, ["channels_last=false"])
    assert (cfg["tta"], cfg["train_views"], cfg["crop_size"]) == ("tencrop", "tencrop", 40)
    ten = step_costs(paper, "vggnet", cfg, (0.5, 0.25))
    one = step_costs(paper, "vggnet", {**cfg, "tta": "none", "train_views": "one"}, (0.5, 0.25))
    assert ten["eval_flops_per_img"] == pytest.approx(10 * one["eval_flops_per_img"])
    assert ten["train_flops_per_img"] == pytest.approx(10 * one["train_flops_per_img"])
    assert one["train_flops_per_img"] == pytest.approx(3 * one["eval_flops_per_img"], rel=0.02)  # backward: 2x
    assert ten["eval_ops_per_batch"] > 5 * one["eval_ops_per_batch"]  # the network runs once per view
    assert one["train_ops_per_batch"] > 2 * one["eval_ops_per_batch"]  # forward, backward, optimiser


def test_conventional_transforms_give_the_recipes_tensors():
    from PIL import Image

    img = Image.fromarray(torch.randint(0, 256, (48, 48), dtype=torch.uint8).numpy())
    vgg = resolve_config("nurmakhan_vgg", "vggnet", "paper", None, [])
    assert conventional_transforms(vgg, train=True)(img).shape == (10, 1, 40, 40)  # ten crops, each a sample
    assert views_per_image(vgg) == 10 and views_per_image({**vgg, "train_views": "one"}) == 1
    assert conventional_transforms(vgg, train=False)(img).shape == (1, 48, 48)  # tta cuts the views, as in fer_bench
    huang = resolve_config("huang_fpn", "resnet50_fpn", "paper", None, [])
    assert conventional_transforms(huang, train=True)(img).shape == (3, 512, 512)


def test_conventional_transforms_are_the_recipes_stages_rotation_included():
    T = torchvision.transforms
    vgg = resolve_config("nurmakhan_vgg", "vggnet", "paper", None, [])
    tf = conventional_transforms(vgg, train=True).transforms
    assert [type(t) for t in tf[:5]] == [T.Grayscale, T.RandomHorizontalFlip, T.RandomResizedCrop, T.RandomApply,
                                         T.RandomApply]
    translate, rotate = tf[3], tf[4]  # their RandomApply([RandomAffine(0, translate=...)]) and ([RandomRotation(10)])
    assert translate.p == 0.5 and isinstance(translate.transforms[0], T.RandomAffine)
    assert translate.transforms[0].translate == (0.2, 0.2) and translate.transforms[0].degrees == [0.0, 0.0]
    assert rotate.p == 0.5 and isinstance(rotate.transforms[0], T.RandomRotation)
    assert rotate.transforms[0].degrees == [-10.0, 10.0]
    assert tf[2].scale == (0.8, 1.2) and tf[2].size == (48, 48)
    huang = resolve_config("huang_fpn", "resnet50_fpn", "paper", None, [])
    affine = conventional_transforms(huang, train=True).transforms[2]  # one warp, rotation and scaling, p=1
    assert isinstance(affine, T.RandomAffine) and affine.degrees == [-10.0, 10.0] and affine.scale == (0.9, 1.1)


def test_rounds_take_turns_and_report_the_median(folder, tmp_path):
    r = cli("bench", *TINY, "--rounds", "3", "--pipelines", "pure,fer_bench", "--data", str(folder), "--out",
            str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    (row,) = _rows(tmp_path / "bench.csv")
    assert row["rounds"] == "3" and float(row["fer_bench_train_img_s"]) > 0 and row["conventional_train_img_s"] == ""


def test_median_of_rounds_ignores_no_value():
    assert _median([3.0, 1.0, 2.0]) == 2.0 and _median([1.0, None]) is None


def test_clock_counts_images_after_the_warmup_batches():
    clock = _Clock(torch.device("cpu"), warmup=1)
    clock.ends, clock.images = [10.0, 11.0, 13.0, 14.0], [8, 8, 8, 4]
    assert clock.rate() == pytest.approx(20 / 4)


def test_compile_recipe_key_compiles_in_place_and_keeps_checkpoint_keys():
    cfg = resolve_config("miao_presnet_vgg", "presnet", "paper", None, ["compile=true"])
    net = get_paper("miao_presnet_vgg").build("presnet", cfg)
    keys = list(net.state_dict())
    module = FERClassifier(net, cfg)
    module.setup("fit")
    assert module.model._compiled_call_impl is not None  # compiled lazily, at the first call
    assert list(module.model.state_dict()) == keys



def test_estimate_writes_labelled_gpu_estimates_from_counts(tmp_path, capsys):
    assert main(["bench", "--paper", "miao_presnet_vgg", "--estimate", "--out", str(tmp_path)]) == 0
    assert "Estimates from counts, not measurements" in capsys.readouterr().out
    rows = _rows(tmp_path / "gpu_estimates.csv")
    assert [r["model"] for r in rows] == ["presnet", "presnet_vgg"]
    for r in rows:
        flop_s, launch_s = float(r["estimated_flop_s"]), float(r["estimated_launch_s"])
        assert flop_s > 0 and launch_s > 0
        assert float(r["estimated_epoch_s"]) == pytest.approx(flop_s + launch_s, rel=2e-3)
        assert float(r["estimated_recipe_h"]) == pytest.approx(float(r["estimated_epoch_s"]) * 200 / 3600, rel=2e-3)
        assert "assumption" in r and "H100" in r["assumption"]


def test_pure_pipeline_batch_is_resident_on_the_device_before_the_clock_starts():
    """Its steps must not copy the batch from host memory: `_input` of a resident batch returns the very tensor."""
    from fer_bench.bench import _Plain
    cfg = {**resolve_config("miao_presnet_vgg", "presnet", "smoke", None, []), "channels_last": True}
    plain = _Plain(get_paper("miao_presnet_vgg"), "presnet", cfg, torch.device("cpu"), "32-true")
    x = torch.rand(4, 3, 48, 48)  # NCHW-contiguous, as preprocess makes it (3 channels: 1 is both layouts)
    batches = plain.resident([(x, torch.zeros(4, dtype=torch.long))] * 3)
    assert len(batches) == 3 and all(b is batches[0] for b in batches)
    xr = batches[0][0]
    assert xr.is_contiguous(memory_format=torch.channels_last)
    assert xr is not x and plain._input(xr) is xr  # moved and laid out once; the timed steps copy nothing
