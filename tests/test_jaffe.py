"""JAFFE: the reader on files generated in its naming scheme and formats, the k-fold splits, and a CLI
smoke run of a cross-validation. JAFFE itself cannot be shipped."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import cli
from fer_bench.cli import main
from fer_bench.data import CLASSES
from fer_bench.errors import DataError, UserError
from fer_bench.jaffe import CODES, JAFFE, load_jaffe, parse_name
from fer_bench.protocols import cross_validation, make_folds
from fer_bench.training import FERDataModule

SUBJECTS = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")  # the ten JAFFE subjects
REAL_COUNTS = {"AN": 30, "DI": 29, "FE": 32, "HA": 31, "SA": 31, "SU": 30, "NE": 30}  # the 213 images of JAFFE


def gray_palette_image(indices: np.ndarray) -> Image.Image:
    """A palette ('P') image whose palette maps index k to gray 255 - k: decoding must go through the palette."""
    img = Image.frombytes("P", indices.shape[::-1], np.ascontiguousarray(indices, dtype=np.uint8).tobytes())
    img.putpalette([v for k in range(256) for v in (255 - k,) * 3])
    return img


def write_jaffe(root, takes: int = 1, size: int = 48, seed: int = 0) -> dict[str, tuple[str, int]]:
    """10 subjects x 7 expressions x ``takes`` TIFFs named SUBJECT.EXPRn.ID.tiff; every third one a palette TIFF.
    Each image is constant at a value coding its class, so a smoke run has something to learn."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    written, image_id = {}, 0
    for s in SUBJECTS:
        for code in CODES:
            for take in range(1, takes + 1):
                image_id += 1
                name = f"{s}.{code}{take}.{image_id}.tiff"
                value = 30 * CODES[code] + int(rng.integers(0, 10))
                pixels = np.full((size, size), value, dtype=np.uint8)
                if image_id % 3 == 0:
                    gray_palette_image(255 - pixels).save(root / name)
                else:
                    Image.fromarray(pixels).save(root / name)
                written[name] = (s, CODES[code], value)
    return written


def test_names_map_to_fer_label_order():
    assert [CLASSES[CODES[c]] for c in ("AN", "DI", "FE", "HA", "SA", "SU", "NE")] == \
        ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert parse_name("KA.AN1.39.tiff") == ("KA", 0)
    assert parse_name("YM.NE3.51.tiff") == ("YM", 6)
    assert parse_name("KR.SU1.79.TIF") == ("KR", 5)
    for bad in ("KA_AN1_39.tiff", "KA.XX1.39.tiff", "KA.AN.39.tiff", "KAA.AN1.39.tiff"):
        with pytest.raises(DataError, match="SUBJECT.EXPRn.ID.tiff"):
            parse_name(bad)


def test_reader_labels_subjects_palette_and_resize(tmp_path):
    written = write_jaffe(tmp_path / "jaffe")
    big = np.full((256, 256), 77, dtype=np.uint8)  # JAFFE's own size, resized to 48x48
    Image.fromarray(big).save(tmp_path / "jaffe" / "KA.SU2.300.tiff")
    written["KA.SU2.300.tiff"] = ("KA", 5, 77)
    pal = np.arange(48 * 48, dtype=np.int64).reshape(48, 48) % 256  # a palette TIFF with varying indices
    gray_palette_image(pal.astype(np.uint8)).save(tmp_path / "jaffe" / "NA.DI2.301.tiff")
    (tmp_path / "jaffe" / "README.txt").write_text("not an image")  # other files are ignored
    assert Image.open(tmp_path / "jaffe" / "NA.DI2.301.tiff").mode == "P"

    d = load_jaffe(tmp_path / "jaffe")
    assert isinstance(d, JAFFE) and d.images.shape == (72, 48, 48) and d.images.dtype == torch.uint8
    assert d.subject_names == SUBJECTS and len(d.fingerprint) == 16
    for i, f in enumerate(d.files):
        if f == "NA.DI2.301.tiff":
            assert torch.equal(d.images[i], torch.from_numpy((255 - pal).astype(np.uint8)))  # through the palette
            assert (d.subject_names[d.subjects[i]], int(d.labels[i])) == ("NA", 1)
            continue
        subject, label, value = written[f]
        assert (d.subject_names[d.subjects[i]], int(d.labels[i])) == (subject, label), f
        assert torch.all(d.images[i] == value), f  # palette files decode to the gray value, not the index
    assert torch.bincount(d.labels).tolist() == [10, 11, 10, 10, 10, 11, 10]
    assert load_jaffe(tmp_path / "jaffe").fingerprint == d.fingerprint


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")  # PIL, on the corrupt file
@pytest.mark.parametrize("make, message", [
    (lambda root: None, "No .tiff files"),
    (lambda root: Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "KA_AN1_39.tiff"), "KA_AN1_39.tiff"),
    (lambda root: (root / "KA.AN1.39.tiff").write_bytes(b"II*\x00 this is not a tiff"), "Cannot decode"),
])
def test_bad_input_is_a_data_error(tmp_path, make, message):
    root = tmp_path / "jaffe"
    root.mkdir()
    make(root)
    with pytest.raises(DataError, match=message):
        load_jaffe(root)


def test_folds_default_to_five_on_jaffe_and_are_refused_on_fer2013():
    from fer_bench.runner import _check_folds
    assert _check_folds("jaffe", None, resume=False) == 5 and _check_folds("jaffe", 10, resume=False) == 10
    assert _check_folds("fer2013", None, resume=False) == 0
    with pytest.raises(UserError, match="official splits"):
        _check_folds("fer2013", 5, resume=False)
    with pytest.raises(UserError, match="at least 2"):
        _check_folds("jaffe", 1, resume=False)
    with pytest.raises(UserError, match="--resume"):
        _check_folds("jaffe", 5, resume=True)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")  # PIL, on the corrupt file
def test_bad_jaffe_exits_2_with_a_message(tmp_path, capsys):
    args = ["run", "--paper", "miao_presnet_vgg", "--dataset", "jaffe", "--out", str(tmp_path / "out")]
    assert main([*args, "--data", str(tmp_path / "nowhere")]) == 2
    assert "JAFFE not found" in capsys.readouterr().err
    write_jaffe(tmp_path / "jaffe")
    (tmp_path / "jaffe" / "KA.AN1.1.tiff").write_bytes(b"MM\x00*garbage")
    assert main([*args, "--data", str(tmp_path / "jaffe")]) == 2
    assert "Cannot decode" in capsys.readouterr().err
    assert main([*args, "--data", str(tmp_path / "jaffe"), "--set", "folds_by=face"]) == 2
    assert "choose one of expression, subject" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing is trained or written before the input is known to be good


def jaffe_like_labels() -> tuple[torch.Tensor, torch.Tensor]:
    """213 labels with JAFFE's class counts, subjects dealt round-robin (about 21 images each)."""
    labels = torch.cat([torch.full((n,), CODES[c]) for c, n in REAL_COUNTS.items()])
    return labels, torch.arange(len(labels)) % len(SUBJECTS)


@pytest.mark.parametrize("k", [5, 3])
def test_stratified_folds_partition_and_balance(k):
    labels, subjects = jaffe_like_labels()
    folds = make_folds(labels, k, "expression", subjects, seed=0)
    everything = torch.cat(folds)
    assert len(folds) == k and len(everything) == 213
    assert torch.equal(everything.sort().values, torch.arange(213))  # no image in two test folds; union is all
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for c in range(7):  # stratified: every class spread evenly over the folds
        per_fold = [int((labels[f] == c).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1, (c, per_fold)
    assert all(torch.equal(a, b) for a, b in zip(folds, make_folds(labels, k, "expression", subjects, seed=0)))
    assert not all(torch.equal(a, b) for a, b in zip(folds, make_folds(labels, k, "expression", subjects, seed=1)))


def test_subject_independent_folds_keep_subjects_apart():
    labels, subjects = jaffe_like_labels()
    folds = make_folds(labels, 5, "subject", subjects, seed=0)
    assert torch.equal(torch.cat(folds).sort().values, torch.arange(213))
    seen = set()
    for f in folds:
        test_subjects = set(subjects[f].tolist())
        train = torch.ones(213, dtype=torch.bool)
        train[f] = False
        assert not test_subjects & set(subjects[train].tolist())  # no subject in both train and test of a fold
        assert not test_subjects & seen  # nor in two test folds
        seen |= test_subjects
        assert len(test_subjects) == 2  # 10 subjects, 5 folds
    assert seen == set(range(10))
    with pytest.raises(UserError, match="only 10 subjects"):
        make_folds(labels, 11, "subject", subjects)
    with pytest.raises(UserError, match="at least 2"):
        make_folds(labels, 1)


def test_fold_datamodule_trains_on_the_rest_and_selects_on_the_fold(tmp_path):
    write_jaffe(tmp_path / "jaffe", takes=2)
    d = load_jaffe(tmp_path / "jaffe")
    from fer_bench.runner import resolve_config
    cfg = resolve_config("miao_presnet_vgg", "presnet", "paper", None, [], dataset="jaffe")
    split = cross_validation(d, 5, "expression", split_seed=0)[2]
    fold = make_folds(d.labels, 5, "expression", d.subjects)[2]
    assert torch.equal(split.val, fold) and split.fold["index"] == 3 and split.protocol == "5-fold"
    dm = FERDataModule(d, cfg, seed=0, split=split)
    dm.setup()
    assert dm.split_names == ("test", "train")
    assert dm.val_set is dm.test_sets[0] and torch.equal(dm.val_set.labels, d.labels[fold])
    assert len(dm.train_set) + len(dm.val_set) == len(d.labels) == 140 and len(dm.test_sets[1]) == 112


def test_jaffe_cross_validation_smoke_through_the_cli(tmp_path):
    write_jaffe(tmp_path / "jaffe")
    r = cli("run", "--paper", "miao_presnet_vgg", "--model", "presnet", "--dataset", "jaffe",
            "--data", str(tmp_path / "jaffe"), "--profile", "smoke", "--out", str(tmp_path / "out"), "--no-progress",
            "--folds", "2", "--set", "folds_by=subject")  # 2 folds keep it short; the paper's 5 are the default
    assert r.returncode == 0, r.stderr
    paths = sorted((tmp_path / "out" / "runs" / "miao_presnet_vgg" / "presnet").glob("*/metrics.json"))
    runs = [json.loads(p.read_text()) for p in paths]
    assert len(runs) == 2 and [d["fold"]["index"] for d in runs] == [1, 2]
    subjects = [s for d in runs for s in d["fold"]["test_subjects"]]
    assert sorted(subjects) == list(SUBJECTS)  # each subject tested in exactly one fold
    assert sum(d["splits"]["test"]["n"] for d in runs) == 70
    for d, p in zip(runs, paths):
        assert p.parent.name == f"{d['fold']['cv_id']}-f{d['fold']['index']}" == d["run_id"]
        assert d["status"] == "completed" and d["protocol"] == "2-fold-subject" and d["selected_on"] == "test"
        assert "selection on the test set" in d["protocol_note"]
        assert set(d["splits"]) == {"test", "train"} and d["splits"]["train"]["n"] == 70 - d["fold"]["test_n"]
        assert d["dataset"]["name"] == "jaffe" and d["dataset"]["format"] == "tiff" and d["dataset"]["n"] == 70
        assert d["config"]["epochs"] == 1 and d["config"]["monitor"] == "val/loss"  # smoke cuts JAFFE's 30 epochs
        assert d["budget"]["full"] is False and "epochs=1 (paper: 30)" in d["budget"]["reasons"]
    (cv_path,) = (tmp_path / "out" / "runs" / "miao_presnet_vgg" / "presnet").glob("*-cv/cv.json")
    cv = json.loads(cv_path.read_text())
    accs = [d["splits"]["test"]["accuracy"] for d in runs]
    assert cv["test"]["accuracy"]["per_fold"] == pytest.approx(accs)
    assert cv["test"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert cv["test"]["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert cv["pooled"]["n"] == 70 and cv["folds"] == 2 and cv["folds_by"] == "subject"
    assert cv["pooled"]["accuracy"] == pytest.approx(np.trace(np.array(cv["pooled"]["confusion_matrix"])) / 70)
    assert "+-" in r.stdout and "over 2 folds" in r.stdout
