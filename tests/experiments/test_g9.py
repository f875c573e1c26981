"""G9 quick run (16-px scenes, 4×4×4 latents): the whole pipeline runs — autoencoder, latent and pixel text-to-image
models, FID on our attribute features, caption accuracy, negative prompts, the saved run folder — and latent
diffusion costs a fraction of pixel diffusion per sample (FLOPs and seconds).

NOT asserted: `held`. At the quick setting's budget (150 latent steps) neither model learns to follow its caption
(colour accuracy at chance, the negative prompt without effect); in the full run the latent model follows the
caption's colour (86.8%) and the negative prompt but not its shape, so the claim does not hold there either
(results/G9/latent-diffusion/)."""
from __future__ import annotations

import math


def test_g9_quick_runs_and_latent_is_cheaper_per_sample(run_quick, tmp_path):
    s = run_quick("latent-diffusion")
    m = s["metrics"]
    assert m["checks"]["cheaper_flops"] and m["checks"]["cheaper_seconds"]
    assert m["flops_ratio"] < 0.2 and m["seconds_ratio"] < 0.5
    assert m["latent_shape"] == [4, 4, 4] and 0.1 < m["scaling_factor"] < 10
    assert math.isfinite(m["fid_latent"]) and math.isfinite(m["fid_pixel"])
    assert m["classifier_colour_acc"] > 0.8                       # the attribute network reads colour
    assert set(m["checks"]) == {"no_more_training_time", "cheaper_flops", "cheaper_seconds", "comparable_fid",
                                "colour_follows_caption", "shape_follows_caption", "negative_removes_colour"}
    run_dir = tmp_path / "latent-diffusion"                        # run_quick's folder
    assert (run_dir / "text2image.json").is_file() and (run_dir / "text_to_image.png").is_file()
