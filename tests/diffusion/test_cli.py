"""`deepatlas generate-images`: a grid from a saved diffusion run; one-line errors for bad input."""
from __future__ import annotations

import pytest
import torch

from deepatlas.cli import main
from deepatlas.diffusion.fashion import DDPMSetup, make_unet
from deepatlas.diffusion.store import load_diffusion, save_diffusion


def _saved(folder, conditional: bool):
    setup = DDPMSetup(T=20, data="digits", size=8, channels=(8, 16), head_dim=8, conditional=conditional)
    torch.manual_seed(0)
    save_diffusion(folder, make_unet(setup), setup, train_seconds=0.0)
    return folder


@pytest.fixture
def cond_dir(tmp_path_factory):
    return _saved(tmp_path_factory.mktemp("cond"), True)


def test_saved_model_round_trips(cond_dir):
    model, schedule, setup, meta = load_diffusion(cond_dir)
    torch.manual_seed(0)
    ref = make_unet(setup)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    torch.testing.assert_close(model(x, t, torch.tensor([1, 10])), ref(x, t, torch.tensor([1, 10])))
    assert schedule.T == 20 and setup.channels == (8, 16) and meta["kind"] == "ddpm"


def test_generate_images_writes_a_grid(cond_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["generate-images", str(cond_dir), "--n", "6", "--steps", "5", "--label", "7", "--out", str(out)]) == 0
    assert out.stat().st_size > 100 and "'7', w = 3" in capsys.readouterr().out
    uncond = _saved(tmp_path / "uncond", False)
    assert main(["generate-images", str(uncond), "--n", "4", "--sampler", "ddpm", "--steps", "20",
                 "--out", str(tmp_path / "u.png")]) == 0


@pytest.mark.parametrize("extra,message", [
    (["--label", "12"], "unknown label '12'; valid: 0..9"),
    (["--steps", "0"], "valid: 1..20"),
    (["--steps", "21"], "valid: 1..20"),
    (["--n", "0"], "--n 0"),
    (["--guidance", "-1"], "valid: ≥ 0"),
])
def test_bad_input_is_one_line(cond_dir, tmp_path, capsys, extra, message):
    assert main(["generate-images", str(cond_dir), "--steps", "5", "--out", str(tmp_path / "g.png"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_wrong_kind_of_folder(tmp_path, capsys):
    (tmp_path / "result.json").write_text("{}")
    assert main(["generate-images", str(tmp_path), "--out", str(tmp_path / "g.png")]) == 2
    assert "another kind of run folder" in capsys.readouterr().err
    uncond = _saved(tmp_path / "u", False)
    assert main(["generate-images", str(uncond), "--steps", "5", "--label", "3", "--out", str(tmp_path / "g.png")]) == 2
    assert "unconditional" in capsys.readouterr().err
