"""M2: a vision-language model on SmolLM2-135M answers questions about held-out shape scenes — LLaVA's
projector and Flamingo's Perceiver Resampler with gated cross-attention, against the same LLM
fine-tuned on the questions without the image.

Built: models/vlm.py (vision tower = a hybrid ViT with average-pooled 3×3 patch tokens; LLaVA's
MLP projector with the image tokens before the text; Flamingo's Perceiver Resampler and tanh-gated
cross-attention layers, gates at 0 so the LLM starts unchanged; a greedy decoder with a KV cache),
multimodal/vqa.py (questions, training, scoring, saving for `deepatlas ask-image`).

Data: generated scenes of data/shapes.py (48 px, 1–3 shapes on a noisy background, deterministic
in (seed, split, index)). Training scenes that show any of four colour–shape pairs (HELD_OUT:
red triangle, blue star, green circle, yellow square) are dropped; the test split's scenes are
all scored, those showing a held-out pair reported apart. Questions of four kinds (vqa.KINDS):
count ("how many objects are there?"), colour ("what colour is the object at the top left?"),
position ("where is the red object?" -> "top left"), shape ("what shape is the red object?").
Objects are named by colour or cell, not by shape (data.shapes.questions asks "what colour is the
circle?"): a small tower names these shapes poorly (M1's linear probe: 43% on lone shapes), and a
question that hinges on it would measure the tower, not the language model's use of the image.

Recipe (every design gets the same frozen SmolLM2, the same frozen vision tower, the same
question batches, bf16 autocast where the CPU has it):
  0. the tower is pre-trained to name the shape and colour centred in each of the 3×3 cells, then
     its output is standardised per dimension over the training scenes (z ← (z − μ)/σ): raw, the
     tokens share a large constant part (an earlier full run: LLaVA 28.5% in one run, 22.3% = the
     baseline in a re-run, training loss 0.69 for all three designs — the image went unused);
  text      LoRA (r 8 on q, k, v, o) on the questions alone, `qa_steps` steps;
  llava     stage 1: the projector alone on captions, `caption_steps`; stage 2: projector + LoRA
            on the questions, `qa_steps`;
  flamingo  the resampler + gated cross-attention layers (LLM frozen, as in Flamingo), the same
            two stages; the tanh gates (α = 0 at the start) get their own AdamW group at
            `gate_lr_scale` = 30 × the rate (core/train reads a parameter's lr_scale): at one shared
            rate they opened only to |tanh α| ≤ 0.04 in 140 steps (an earlier full run), the
            cross-attention's output all but shut off (Flamingo trains far longer than this run); a
            probe of 80 steps opened them to ≤ 0.20 at 10× and ≤ 0.39 at 30×. Stage 2 runs
            `flamingo_qa_steps` = 280 steps, not `qa_steps` = 120: its 10.4M new parameters (LLaVA's
            projector + LoRA: 1.3M) start from scratch, and at 120 steps its margin over the baseline
            was a seed's draw (this machine, seeds 0 / 1 / 2: 26.2 / 36.3 / 29.5% against 24.9 / 23.8
            / 24.0%; at 280, seeds 0 and 2: 39.3% and 38.9%). The designs' seconds are reported.
  all stages: AdamW, peak rate `lr`, 10% warm-up then cosine, batch `batch`, bf16 autocast (`precision`
  auto: where the CPU multiplies bf16 in hardware; fp32 on an AVX2 CPU, where bf16 is ~10x slower).
Measured: exact-match accuracy of the greedy answer (the answer words, stripped) on one question
of each kind per test scene; by kind, and on scenes with held-out pairs.
Held when both VLMs' accuracies are at least `k_se` = 3 binomial standard errors above the text-only
baseline's, SE = √(p(1−p)/n) with p the baseline's accuracy and n the test questions (p < 0.002
one-sided). The quick setting (a few steps on the first 6 of SmolLM2's 30 blocks, seconds: too few for the
LLM to learn to read the image) only checks the machinery: k_se = −2, no VLM more than two standard errors
below the baseline — it does not show the claim.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from deepatlas.core.hardware import speed_precision
from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run


@dataclass
class Config:
    n_train: int = 1500
    n_test: int = 100
    tower_steps: int = 600
    caption_steps: int = 20
    qa_steps: int = 120
    flamingo_qa_steps: int = 280
    batch: int = 16
    lr: float = 2e-3
    gate_lr_scale: float = 30.0
    llm_layers: int = 0          # 0: all 30 SmolLM2 blocks; k: the first k (quick)
    precision: str = "auto"      # bf16 autocast | fp32 | auto: bf16 where the CPU multiplies it in hardware
    k_se: float = 3.0
    seed: int = 0


@experiment("M2", "vlm-shapes",
            claim="SmolLM2-135M given a vision tower's tokens answers questions about held-out shape scenes (colour, "
                  "shape, count, position) well above the same LLM fine-tuned on the questions without the image — "
                  "through LLaVA's projector and through Flamingo's resampler + gated cross-attention",
            config=Config, one_thread=True,
            quick={"n_train": 200, "n_test": 16, "tower_steps": 40, "caption_steps": 2, "qa_steps": 6,
                   "flamingo_qa_steps": 6, "batch": 4, "llm_layers": 6, "k_se": -2.0},
            headline={"acc_llava": ("LLaVA answer accuracy", "{:.1%}"),
                      "acc_flamingo": ("Flamingo answer accuracy", "{:.1%}"),
                      "acc_text": ("text-only baseline", "{:.1%}"),
                      "acc_llava_held_out_pairs": ("LLaVA on unseen colour–shape pairs", "{:.1%}")})
def vlm_shapes(cfg: Config, run: Run) -> Verdict:
    from deepatlas.chat.session import ChatModel
    from deepatlas.data.shapes import shapes_dataset
    from deepatlas.multimodal import vqa
    from deepatlas.quant.weights import require_smollm2
    from deepatlas.tuning.lora import remove_lora, trainable_parameters

    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision={cfg.precision!r}; valid: auto, bf16, fp32")
    bf16 = speed_precision(cfg.precision) == "bf16"
    vcfg = vqa.VQAConfig(seed=cfg.seed, gate_lr_scale=cfg.gate_lr_scale, llm_layers=cfg.llm_layers)
    data = {"size": vcfg.image_size, "max_objects": vcfg.max_objects, "seed": cfg.seed, "n": cfg.n_test}
    tr = shapes_dataset("train", cfg.n_train, size=vcfg.image_size, seed=cfg.seed, max_objects=vcfg.max_objects)
    te = shapes_dataset("test", cfg.n_test, size=vcfg.image_size, seed=cfg.seed, max_objects=vcfg.max_objects)
    keep = [i for i, o in enumerate(tr.objects) if not vqa.has_held_out(o)]
    x_tr, o_tr = tr.images[keep], [tr.objects[i] for i in keep]
    rng = random.Random(cfg.seed)
    ex_tr = vqa.examples(o_tr, None, rng)
    ex_te = vqa.examples(te.objects, 1, random.Random(cfg.seed + 1))
    caps = vqa.caption_examples(o_tr)
    run.print(f"{len(o_tr)} training scenes ({cfg.n_train - len(o_tr)} with held-out pairs dropped), "
              f"{len(ex_tr)} training questions; {len(te)} test scenes, {len(ex_te)} test questions")

    t0 = time.perf_counter()
    tower, tinfo = vqa.pretrain_tower(vcfg, x_tr, o_tr, cfg.tower_steps, test=(te.images, te.objects))
    f_tr, f_te = vqa.tower_features(tower, x_tr), vqa.tower_features(tower, te.images)
    run.print(f"tower: {cfg.tower_steps} steps in {time.perf_counter() - t0:.0f} s, occupied test cells named "
              f"right {tinfo['tower_cell_accuracy']:.1%}")

    chat = ChatModel.load(require_smollm2())
    texts = vqa.Texts(chat.tokenizer, chat.stop_ids[0])
    llm = chat.model
    answers, curves, seconds, params = {}, {}, {}, {}
    for design in vqa.DESIGNS:
        t = time.perf_counter()
        model = vqa.build(design, vcfg, llm, tower)
        feats = None if design == "text" else f_tr
        losses = []
        if design != "text" and cfg.caption_steps:     # stage 1: the connector alone, on captions
            losses += vqa.fit(model, feats, caps, texts, cfg.caption_steps, cfg.batch, cfg.lr, cfg.seed,
                              bf16).losses
        if design != "flamingo":
            vqa.add_lora(model, vcfg)                    # stage 2 (and the baseline): LoRA on the LLM
        params[design] = trainable_parameters(model)
        if design == "llava":
            metrics_bf16 = _bf16_check(model, f_tr, ex_tr, texts, cfg.batch)
            run.print("bf16 autocast vs fp32, one training step: " + ", ".join(f"{k} {v:.3g}" for k, v in metrics_bf16.items()))
        steps = cfg.flamingo_qa_steps if design == "flamingo" else cfg.qa_steps
        losses += vqa.fit(model, feats, ex_tr, texts, steps, cfg.batch, cfg.lr, cfg.seed + 1, bf16).losses
        answers[design] = vqa.answer(model, None if design == "text" else f_te, ex_te, texts, bf16=bf16)
        vqa.save(run.dir, design, model, vcfg, data, bf16)
        if design != "flamingo":
            remove_lora(llm)
        curves[design], seconds[design] = losses, time.perf_counter() - t
        if design == "flamingo":
            gates = [(x.attn_gate.detach().tanh().item(), x.ff_gate.detach().tanh().item()) for x in model.xattn]
        run.print(f"{design:9s} {len(losses)} steps + scoring in {seconds[design]:.0f} s, final loss "
                  f"{np.mean(losses[-10:]):.3f}")
        run.log(design=design, seconds=seconds[design], final_loss=float(np.mean(losses[-10:])))

    truth = [e.answer for e in ex_te]
    held_scene = np.array([vqa.has_held_out(te.objects[e.scene]) for e in ex_te])
    kinds = np.array([e.kind for e in ex_te])
    n = len(ex_te)
    metrics: dict = {"n_test_questions": n, "n_test_scenes": len(te), "n_train_scenes": len(o_tr),
                     "n_held_out_pair_questions": int(held_scene.sum()), **tinfo, **metrics_bf16, "precision_used": "bf16" if bf16 else "fp32"}
    right = {d: np.array([a == b for a, b in zip(answers[d], truth)]) for d in vqa.DESIGNS}
    for d in vqa.DESIGNS:
        metrics[f"acc_{d}"] = float(right[d].mean())
        metrics[f"acc_{d}_held_out_pairs"] = float(right[d][held_scene].mean()) if held_scene.any() else float("nan")
        for k in vqa.KINDS:
            metrics[f"acc_{d}_{k}"] = float(right[d][kinds == k].mean()) if (kinds == k).any() else float("nan")
        metrics[f"seconds_{d}"], metrics[f"trainable_params_{d}"] = seconds[d], params[d]
    p = metrics["acc_text"]
    se = float(np.sqrt(max(p * (1 - p), 1e-12) / n))
    # paired difference of the two designs, its SE from the per-question differences
    diff = right["llava"].astype(float) - right["flamingo"].astype(float)
    metrics.update(baseline_se=se, llava_minus_flamingo=float(diff.mean()),
                   llava_minus_flamingo_se=float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                   flamingo_gates_tanh=gates)
    checks = {d: metrics[f"acc_{d}"] >= p + cfg.k_se * se for d in ("llava", "flamingo")}
    metrics["checks"] = checks
    for d in vqa.DESIGNS:
        run.print(f"  {d:9s} accuracy {metrics[f'acc_{d}']:.1%}  held-out pairs "
                  f"{metrics[f'acc_{d}_held_out_pairs']:.1%}  by kind "
                  + ", ".join(f"{k} {metrics[f'acc_{d}_{k}']:.0%}" for k in vqa.KINDS))
    lines = ["scene\tkind\tquestion\tanswer\t" + "\t".join(vqa.DESIGNS)]
    lines += ["\t".join([str(e.scene), e.kind, e.question, e.answer] + [answers[d][i] for d in vqa.DESIGNS])
              for i, e in enumerate(ex_te)]
    (run.dir / "answers.tsv").write_text("\n".join(lines) + "\n")
    _plots(run, metrics, curves, te, ex_te, answers)
    notes = (f"accuracy LLaVA {metrics['acc_llava']:.1%}, Flamingo {metrics['acc_flamingo']:.1%}, text-only "
             f"{p:.1%} (± {se:.1%}) on {n} questions about {len(te)} held-out scenes; LLaVA − Flamingo "
             f"{metrics['llava_minus_flamingo']:+.1%} ± {metrics['llava_minus_flamingo_se']:.1%}; on scenes with unseen "
             f"colour–shape pairs LLaVA {metrics['acc_llava_held_out_pairs']:.1%}; failed: "
             f"{[k for k, ok in checks.items() if not ok] or 'none'}")
    return Verdict(held=all(checks.values()), metrics=metrics, notes=notes)


def _bf16_check(model, feats, exs, texts, batch: int) -> dict:
    """One training step's loss and gradient in fp32 and under bf16 autocast, and their times (best of 2)."""
    from deepatlas.models.vlm import answer_loss

    chosen = exs[:batch]
    ids, mask = texts.batch(chosen)
    x = feats[[e.scene for e in chosen]]
    out = {}
    for name, on in (("fp32", False), ("bf16", True)):
        best = float("inf")
        for _ in range(2):
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
                loss = answer_loss(model, x, ids, mask)
            loss.backward()
            best = min(best, time.perf_counter() - t)
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        out[name] = (float(loss.detach()), grad, best)
    model.zero_grad(set_to_none=True)
    (l32, g32, t32), (l16, g16, t16) = out["fp32"], out["bf16"]
    return {"bf16_step_speedup": t32 / t16, "bf16_loss_abs_diff": abs(l16 - l32),
            "bf16_grad_cosine": float(torch.nn.functional.cosine_similarity(g32, g16, dim=0))}


def _plots(run: Run, metrics: dict, curves: dict, te, ex_te, answers: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepatlas.multimodal.vqa import DESIGNS, KINDS

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    w = 0.27
    groups = list(KINDS) + ["all"]
    for j, d in enumerate(DESIGNS):
        vals = [metrics[f"acc_{d}_{k}"] for k in KINDS] + [metrics[f"acc_{d}"]]
        a1.bar(np.arange(len(groups)) + (j - 1) * w, vals, w, label={"text": "text only"}.get(d, d))
    a1.set(xticks=range(len(groups)), xticklabels=groups, ylim=(0, 1), ylabel="exact-match accuracy",
           title=f"held-out scenes ({metrics['n_test_questions']} questions)")
    a1.legend(fontsize=8)
    for d, losses in curves.items():
        a2.plot(losses, lw=0.8, label=d)
    a2.set(xlabel="step (captions, then questions)", ylabel="answer-token cross-entropy", yscale="log",
           title="training loss")
    a2.legend(fontsize=8)
    fig.tight_layout()
    run.savefig(fig, "accuracy_by_kind")
    plt.close(fig)

    scenes = sorted({e.scene for e in ex_te})[:3]
    fig, axes = plt.subplots(2, len(scenes), figsize=(4.6 * len(scenes), 6.4), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 0.8]})
    for j, s in enumerate(scenes):
        ax, tx = axes[0, j], axes[1, j]
        ax.imshow(te.images[s].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(f"held-out scene {s}", fontsize=9)
        rows = [f"Q: {e.question}\n  truth {e.answer:12s} text {answers['text'][i] or '∅'}\n"
                f"  llava {answers['llava'][i] or '∅':12s} flamingo {answers['flamingo'][i] or '∅'}"
                for i, e in enumerate(ex_te) if e.scene == s]
        tx.text(0.0, 1.0, "\n".join(rows), transform=tx.transAxes, fontsize=7, va="top", ha="left",
                family="monospace", wrap=True)
        for a in (ax, tx):
            a.axis("off")
    fig.tight_layout()
    run.savefig(fig, "examples")
    plt.close(fig)
