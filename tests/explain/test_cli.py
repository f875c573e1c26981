"""`deepatlas explain`: writes the overlay for a saved model, one-line errors for bad input."""
import pytest
import torch

from deepatlas.cli import main
from deepatlas.models.cnn import ResNet
from deepatlas.models.vit import ViT
from deepatlas.vision.classify import save_model


@pytest.fixture
def resnet_dir(tmp_path):
    kwargs = {"depths": (1, 1), "widths": (4, 8)}
    torch.manual_seed(0)
    save_model(tmp_path, "resnet", kwargs, ResNet(**kwargs))
    return tmp_path


def test_explain_writes_gradcam_and_rollout(resnet_dir, tmp_path_factory, capsys):
    out = resnet_dir / "cam.png"
    assert main(["explain", str(resnet_dir), "--image", "3", "--layer", "stages.0", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and "gradcam at stages.0" in capsys.readouterr().out
    vit_dir = tmp_path_factory.mktemp("vit")
    kwargs = {"image_size": 28, "patch_size": 7, "dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32}
    save_model(vit_dir, "vit", kwargs, ViT(**kwargs))
    assert main(["explain", str(vit_dir), "--image", "0"]) == 0
    assert (vit_dir / "explain_rollout_0.png").is_file()


@pytest.mark.parametrize("args,message", [
    (["--image", "10000"], "out of range: the test set has 10000 images"),
    (["--image", "0", "--layer", "nope"], "valid: .*stages.1"),
    (["--image", "0", "--method", "rollout"], "does not apply to this resnet model; valid: gradcam"),
])
def test_explain_errors_are_one_line(resnet_dir, capsys, args, message):
    import re
    assert main(["explain", str(resnet_dir)] + args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(message, err), err


def test_explain_refuses_a_run_folder_of_another_experiment(tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{}")
    assert main(["explain", str(tmp_path), "--image", "0"]) == 2
    assert "holds no image model" in capsys.readouterr().err
