"""Efficient adaptation (T1, T2): LoRA training step vs peft, NF4 quantise / dequantise vs
bitsandbytes on CPU, and the training memory of QLoRA vs LoRA on SmolLM2.

  lora_step_vs_peft          one AdamW step (forward, loss, backward, update) of LoRA r=8 on q, v of
                             the same tiny Llama (ours built from HF's weights), batch 8 × 64 tokens;
                             goal ≥ 1.0 (ratio = peft's time / ours)
  nf4_quantize_vs_bnb        quantize_nf4 vs bitsandbytes.functional.quantize_4bit(nf4, double
  nf4_dequantize_vs_bnb      quantisation) on a 2048 × 2048 fp32 weight: weights per second; the
                             ratio is reported (goal 0.5: within 2× of bitsandbytes' CPU kernels)
  qlora_training_memory      bytes one training step of SmolLM2-135M needs with LoRA on the fp32
                             model (peer) and with QLoRA (ours), batch 2 × 64 tokens: weights +
                             12 bytes per trainable parameter (gradient, Adam's m, v) + autograd's
                             saved tensors, counted from the tensors (tuning.qlora.training_bytes,
                             saved_tensors_hooks); goal ≥ 2 (ratio = LoRA bytes / QLoRA bytes)
"""
from __future__ import annotations

import copy
import warnings

import torch

from bench.common import interleaved_median_times, result


def lora_step_vs_peft(repeats: int = 5) -> dict:
    import peft
    import transformers

    from deepatlas.models import llama
    from deepatlas.tuning.lora import apply_lora, lora_layers

    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(vocab_size=2000, hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
                                      num_key_value_heads=4, intermediate_size=688, max_position_embeddings=128,
                                      tie_word_embeddings=True)
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    ours = llama.from_hf_state_dict(hf.state_dict(), llama.LlamaConfig.from_hf(hf.config)).train()
    pm = peft.get_peft_model(hf, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])).train()
    apply_lora(ours, r=8, alpha=16, targets=("q_proj", "v_proj"))
    peft_mods = dict(pm.base_model.model.named_modules())
    names = {n.replace("blocks.", "model.layers."): n for n in lora_layers(ours)}
    for theirs_name, ours_name in names.items():
        layer = lora_layers(ours)[ours_name]
        layer.lora_A.weight.data.copy_(peft_mods[theirs_name].lora_A["default"].weight.data)
    ids = torch.randint(0, 2000, (8, 65), generator=torch.Generator().manual_seed(1))
    opt_ours = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-4)
    opt_peft = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-4)

    def step(model, opt, logits_of):
        logits = logits_of(model)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t = interleaved_median_times({"ours": lambda: step(ours, opt_ours, lambda m: m(ids[:, :-1])),
                                  "peft": lambda: step(pm, opt_peft, lambda m: m(input_ids=ids[:, :-1]).logits)},
                                 repeats=repeats)
    return result("lora_step_vs_peft", "s/step", t["ours"], t["peft"], "peft LoRA (transformers Llama)", 1.0)


def _nf4_pair(repeats: int, what: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes.functional as bnbf
    from deepatlas.quant.nf4 import dequantize_nf4, quantize_nf4

    w = torch.randn(2048, 2048, generator=torch.Generator().manual_seed(0)) * 0.02
    if what == "quantize":
        fns = {"ours": lambda: quantize_nf4(w), "bnb": lambda: bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True,
                                                                                  quant_type="nf4")}
    else:
        ours_t = quantize_nf4(w)
        packed, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
        fns = {"ours": lambda: dequantize_nf4(ours_t), "bnb": lambda: bnbf.dequantize_4bit(packed, state, quant_type="nf4")}
    t = interleaved_median_times(fns, repeats=repeats)
    n = w.numel()
    return result(f"nf4_{what}_vs_bnb", "weights/s", n / t["ours"], n / t["bnb"], "bitsandbytes 4-bit (CPU)", 0.5,
                  higher_is_better=True)


def nf4_quantize_vs_bnb(repeats: int = 7) -> dict:
    return _nf4_pair(repeats, "quantize")


def nf4_dequantize_vs_bnb(repeats: int = 7) -> dict:
    return _nf4_pair(repeats, "dequantize")


def qlora_training_memory(repeats: int = 1) -> dict:
    from deepatlas.experiments.t2_quant import load_smollm2
    from deepatlas.quant.qmodel import quantize_linears
    from deepatlas.tuning.lora import apply_lora
    from deepatlas.tuning.qlora import QLORA_TARGETS, training_bytes

    base, _ = load_smollm2()
    ids = torch.randint(0, base.config.vocab_size, (2, 65), generator=torch.Generator().manual_seed(0))
    lora = copy.deepcopy(base)
    apply_lora(lora, r=8, alpha=16, targets=QLORA_TARGETS)
    lora_bytes = training_bytes(lora.train(), ids)["total"]
    del lora
    quantize_linears(base, "nf4", skip=("lm_head",))
    apply_lora(base, r=8, alpha=16, targets=QLORA_TARGETS)
    qlora_bytes = training_bytes(base.train(), ids)["total"]
    return result("qlora_training_memory", "bytes/step", qlora_bytes, lora_bytes, "LoRA on the fp32 model", 2.0)


BENCHMARKS = [lora_step_vs_peft, nf4_quantize_vs_bnb, nf4_dequantize_vs_bnb, qlora_training_memory]
