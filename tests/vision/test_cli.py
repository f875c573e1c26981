"""`deepatlas detect` / `deepatlas segment`: pictures from saved models, one-line errors."""
import re

import pytest
import torch

from deepatlas.cli import main
from deepatlas.models.detection import OneStageDetector, TwoStageDetector
from deepatlas.models.segmentation import UNet
from deepatlas.vision.detection import save_detectors
from deepatlas.vision.segmentation import save_segmenters

DATA = {"size": 32, "seed": 0, "max_objects": 3, "n": 5}


@pytest.fixture
def det_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("v4")
    torch.manual_seed(0)
    kw = {"image_size": 32, "widths": [4, 8, 16]}
    save_detectors(d, {"one-stage": (OneStageDetector(**kw), kw), "two-stage": (TwoStageDetector(**kw), kw)}, DATA)
    return d


@pytest.fixture
def seg_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("v5")
    kw = {"widths": [4, 8]}
    save_segmenters(d, {"unet": (UNet(**kw), "unet", kw)}, DATA)
    return d


def test_detect_and_segment_write_pictures(det_dir, seg_dir, capsys):
    out = det_dir / "d.png"
    assert main(["detect", str(det_dir), "--image", "4", "--out", str(out), "--score", "0"]) == 0
    assert out.stat().st_size > 1000 and "one-stage:" in capsys.readouterr().out
    assert main(["detect", str(det_dir), "--image", "0", "--model", "two-stage"]) == 0
    assert (det_dir / "detect_0.png").is_file()
    assert main(["segment", str(seg_dir), "--image", "1"]) == 0
    assert (seg_dir / "segment_1.png").stat().st_size > 1000 and "pixels right" in capsys.readouterr().out


@pytest.mark.parametrize("cmd,which,args,message", [
    ("detect", "det", ["--image", "5"], r"out of range: the run's test split has 5 scenes \(0..4\)"),
    ("detect", "det", ["--image", "0", "--model", "yolo"], "valid: one-stage, two-stage"),
    ("detect", "det", ["--image", "0", "--score", "2"], "valid: 0..1"),
    ("detect", "seg", ["--image", "0"], r"it is a run of V5 \(segment-shapes\): use `deepatlas segment`"),
    ("segment", "det", ["--image", "0"], r"it is a run of V4 \(detect-shapes\): use `deepatlas detect`"),
    ("segment", "seg", ["--image", "-1"], "out of range"),
])
def test_errors_are_one_line(det_dir, seg_dir, capsys, cmd, which, args, message):
    folder = det_dir if which == "det" else seg_dir
    assert main([cmd, str(folder)] + args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(message, err), err


def test_refuses_other_folders(tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{}")
    assert main(["detect", str(tmp_path), "--image", "0"]) == 2
    assert "holds no detectors" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "missing"), "--image", "0"]) == 2
    assert "is not a folder" in capsys.readouterr().err
