"""`deepatlas generate-images RUN_DIR --prompt ... [--negative ...]` on a saved (untrained) G9 text-to-image run;
errors name what would be valid, for text runs and for G8 runs alike."""
from __future__ import annotations

import pytest
import torch

from deepatlas.cli import main
from deepatlas.diffusion.fashion import DDPMSetup, make_unet
from deepatlas.diffusion.latent import Text2ImageSetup, load_text_to_image, save_text_to_image, tokenizer
from deepatlas.diffusion.store import save_diffusion
from deepatlas.models.autoencoder_kl import AutoencoderKLConfig
from deepatlas.models.ldm import TextToImage, TextToImageConfig


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t2i")
    setup = Text2ImageSetup(model=TextToImageConfig(image_size=16, channels=(8, 16), attention=(False, True),
                                                    head_dim=8, text_dim=16,
                                                    autoencoder=AutoencoderKLConfig(channels=(8, 8, 8), groups=4)),
                            T=20)
    tok = tokenizer()
    torch.manual_seed(0)
    model = TextToImage(setup.model, len(tok), tok.EOT)
    model.autoencoder.scaling_factor.fill_(0.7)
    save_text_to_image(folder, model, setup, train_seconds=0.0)
    return folder


def test_saved_text_model_round_trips(text_dir):
    model, schedule, setup, meta = load_text_to_image(text_dir)
    assert schedule.T == 20 and setup.model.channels == (8, 16) and meta["kind"] == "text2image"
    assert float(model.autoencoder.scaling_factor) == pytest.approx(0.7)
    ids = tokenizer()(["a red circle", "a star"])
    out = model(torch.randn(2, 4, 4, 4), torch.tensor([3, 7]), ids)
    assert out.shape == (2, 4, 4, 4)


def test_prompt_and_negative_write_a_colour_grid(text_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["generate-images", str(text_dir), "--prompt", "a red circle", "--negative", "a blue shape",
                 "--n", "4", "--steps", "5", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert out.stat().st_size > 100 and "'a red circle'" in said and "negative 'a blue shape'" in said
    import matplotlib.image
    assert matplotlib.image.imread(out).shape[-1] in (3, 4)           # colour, not grey
    assert main(["generate-images", str(text_dir), "--n", "3", "--steps", "4", "--sampler", "ddpm",
                 "--out", str(tmp_path / "all.png")]) == 0
    assert "all colour–shape captions" in capsys.readouterr().out


@pytest.mark.parametrize("extra,message", [
    (["--prompt", "a purple circle"], "not in the vocabulary; valid words: a, blue, circle"),
    (["--label", "3"], "text-conditioned: use --prompt"),
    (["--steps", "21"], "valid: 1..20"),
    (["--guidance", "-1"], "valid: ≥ 0"),
    (["--prompt", "a red circle a red circle a red"], "at most 6 fit"),
])
def test_bad_text_input_is_one_line(text_dir, tmp_path, capsys, extra, message):
    assert main(["generate-images", str(text_dir), "--steps", "5", "--out", str(tmp_path / "g.png"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_prompt_on_a_class_run_names_the_fix(tmp_path, capsys):
    setup = DDPMSetup(T=20, data="digits", size=8, channels=(8, 16), head_dim=8, conditional=True)
    save_diffusion(tmp_path / "g8", make_unet(setup), setup)
    assert main(["generate-images", str(tmp_path / "g8"), "--prompt", "a red circle", "--out",
                 str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "need a text-to-image run" in err and "use --label" in err
    (tmp_path / "empty").mkdir()
    assert main(["generate-images", str(tmp_path / "empty"), "--prompt", "a red circle", "--out",
                 str(tmp_path / "g.png")]) == 2
    assert "latent-diffusion" in capsys.readouterr().err


def test_prediction_is_saved_and_old_folders_read_as_epsilon(text_dir, tmp_path):
    import json
    import shutil

    _, _, setup, _ = load_text_to_image(text_dir)
    assert setup.model.prediction == "v_prediction"                   # the default, saved with the setup
    old = tmp_path / "old"
    shutil.copytree(text_dir, old)
    meta = json.loads((old / "text2image.json").read_text())
    del meta["setup"]["model"]["prediction"]                          # a folder from before the field
    (old / "text2image.json").write_text(json.dumps(meta))
    assert load_text_to_image(old)[2].model.prediction == "epsilon"
    with pytest.raises(ValueError, match="prediction type 'x0'"):
        TextToImageConfig(prediction="x0").unet_config()


def test_scene_backgrounds():
    from deepatlas.diffusion.latent import scene_data

    plain, attrs = scene_data("train", 8, 32)
    textured, attrs_t = scene_data("train", 8, 32, background="textured")
    assert attrs == attrs_t and plain.shape == textured.shape == (8, 3, 32, 32)
    background = (plain == 0).all(1)                                  # (N, H, W) grey pixels
    assert background.float().mean() > 0.6 and torch.equal(plain[~background.unsqueeze(1).expand_as(plain)],
                                                            textured[~background.unsqueeze(1).expand_as(plain)])
    with pytest.raises(ValueError, match="background 'noisy'"):
        scene_data("train", 8, 32, background="noisy")
