"""LoRA equals peft's on the same base (tiny HF BERT and Llama, copied weights and copied A, B):
outputs, gradients of A and B, merge / unmerge, and saved adapters that move between the two."""
from __future__ import annotations

import json

import pytest
import torch

from deepatlas.models import bert, llama
from deepatlas.tuning.lora import (LoRALinear, apply_lora, load_adapter, lora_layers, lora_state_dict, merge_lora,
                                   module_names, save_adapter, trainable_parameters, unmerge_lora)

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

TINY_BERT = bert.BertConfig(vocab_size=57, hidden_size=32, n_layer=2, n_head=4, intermediate_size=64,
                            max_position=40, dropout=0.0)


def _tiny_bert():
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(**TINY_BERT.to_hf())).eval()
    ours = bert.from_hf_state_dict(hf.state_dict(), bert.BertConfig.from_hf(hf.config))
    return hf, ours, module_names(bert.hf_name_map(ours.config, pooler=True))


def _tiny_llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=80, max_position_embeddings=64,
                                   tie_word_embeddings=False)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    ours_cfg = llama.LlamaConfig.from_hf(hf.config)
    ours = llama.from_hf_state_dict(hf.state_dict(), ours_cfg)
    return hf, ours, module_names(llama._name_map(ours_cfg, 0))


def _peft(hf, targets, r, alpha, rslora):
    conf = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, use_rslora=rslora)
    return peft.get_peft_model(hf, conf)


def _copy_from_peft(ours, pm, names):
    """Give our adapters peft's A and B (random B too, so ΔW ≠ 0 and the check bites)."""
    torch.manual_seed(1)
    peft_modules = dict(pm.base_model.model.named_modules())
    for name, layer in lora_layers(ours).items():
        theirs = peft_modules[names[name]]
        with torch.no_grad():
            theirs.lora_B["default"].weight.normal_(0, 0.2)
            layer.lora_A.weight.copy_(theirs.lora_A["default"].weight)
            layer.lora_B.weight.copy_(theirs.lora_B["default"].weight)


CASES = {
    "bert": (_tiny_bert, r"encoder\..*\.(query|value|dense)", ("q_proj", "v_proj", "o_proj", "down_proj", "up_proj")),
    "llama": (_tiny_llama, ["q_proj", "v_proj", "gate_proj"], ("q_proj", "v_proj", "gate_proj")),
}


def _forward(kind, model, ids, hf: bool):
    if kind == "bert":
        mask = torch.ones_like(ids)
        out = model(input_ids=ids, attention_mask=mask) if hf else model(ids, mask)
        return out.last_hidden_state
    return model(input_ids=ids).logits if hf else model(ids)


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("rslora", [False, True])
def test_outputs_and_gradients_equal_peft(kind, rslora):
    make, peft_targets, our_targets = CASES[kind]
    hf, ours, names = make()
    pm = _peft(hf, peft_targets, r=4, alpha=8, rslora=rslora)
    wrapped = apply_lora(ours, r=4, alpha=8, targets=our_targets, rslora=rslora)
    assert {names[n] for n in wrapped} == {n.removeprefix("base_model.model.") for n, m in pm.named_modules()
                                           if hasattr(m, "lora_A") and n.startswith("base_model.model.")}
    _copy_from_peft(ours, pm, names)
    assert trainable_parameters(ours) == sum(p.numel() for p in pm.parameters() if p.requires_grad)
    ids = torch.randint(1, 57, (2, 9), generator=torch.Generator().manual_seed(2))
    y_ref, y = _forward(kind, pm, ids, hf=True), _forward(kind, ours, ids, hf=False)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    (y_ref ** 2).mean().backward()
    (y ** 2).mean().backward()
    peft_modules = dict(pm.base_model.model.named_modules())
    for name, layer in lora_layers(ours).items():
        theirs = peft_modules[names[name]]
        for part in ("lora_A", "lora_B"):
            torch.testing.assert_close(getattr(layer, part).weight.grad, getattr(theirs, part)["default"].weight.grad,
                                       atol=1e-6, rtol=1e-4)
    assert all(p.grad is None for n, p in ours.named_parameters() if "lora_" not in n)  # the base is frozen


def test_scaling_and_zero_init():
    base = torch.nn.Linear(12, 7)
    layer = LoRALinear(base, r=4, alpha=8)
    assert layer.scaling == 2.0 and LoRALinear(torch.nn.Linear(12, 7), r=4, alpha=8, rslora=True).scaling == 4.0
    x = torch.randn(3, 12)
    torch.testing.assert_close(layer(x), base(x), atol=0, rtol=0)               # B = 0: ΔW = 0 at the start
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    expected = base(x) + 2.0 * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T  # W₀x + (α/r) B A x
    torch.testing.assert_close(layer(x), expected)


def test_merge_unmerge_round_trip_and_equal_outputs():
    _, ours, _ = _tiny_llama()
    w0 = {n: p.detach().clone() for n, p in ours.named_parameters()}
    apply_lora(ours, r=4, alpha=16, targets=("q_proj", "k_proj", "v_proj", "o_proj", "down_proj"))
    for layer in lora_layers(ours).values():
        torch.nn.init.normal_(layer.lora_B.weight, std=0.1)
    ids = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        y = ours(ids)
        merge_lora(ours)
        torch.testing.assert_close(ours(ids), y, atol=1e-5, rtol=1e-5)
        unmerge_lora(ours)
    for n, p in ours.named_parameters():
        if "lora_" in n:
            continue
        ref = w0[n.replace(".base.", ".")]
        # exact to the rounding of one fp32 add and subtract: |error| ≤ 1 ulp of |W₀ + ΔW|
        ulp = torch.finfo(torch.float32).eps * (ref.abs() + 1.0)
        assert ((p - ref).abs() <= ulp).all(), n
    merge_lora(ours, unwrap=True)
    assert not lora_layers(ours) and all(type(m) is not LoRALinear for m in ours.modules())
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), y, atol=1e-5, rtol=1e-5)


def test_saved_adapter_loads_into_peft_and_back(tmp_path):
    hf, ours, names = _tiny_llama()
    apply_lora(ours, r=4, alpha=8, targets=("q_proj", "v_proj"))
    for layer in lora_layers(ours).values():
        torch.nn.init.normal_(layer.lora_B.weight, std=0.2)
    save_adapter(ours, tmp_path / "ours", names={n: names[n] for n in lora_layers(ours)})
    cfg = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8 and cfg["target_modules"] == ["q_proj", "v_proj"]
    pm = peft.PeftModel.from_pretrained(hf, str(tmp_path / "ours"))           # peft reads our files
    ids = torch.randint(0, 97, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(pm(input_ids=ids).logits, ours(ids), atol=1e-5, rtol=1e-5)
    pm.save_pretrained(str(tmp_path / "peft"))                               # ... and we read peft's
    _, fresh, _ = _tiny_llama()
    loaded = load_adapter(fresh, tmp_path / "peft", names=names)
    assert len(loaded) == 4 and trainable_parameters(fresh) == trainable_parameters(ours)
    for k, v in lora_state_dict(ours).items():
        torch.testing.assert_close(lora_state_dict(fresh)[k], v, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids), ours(ids), atol=1e-6, rtol=1e-6)


def test_targets_regex_trainable_and_errors():
    _, ours, _ = _tiny_bert()
    wrapped = apply_lora(ours, r=2, alpha=2, targets=r"blocks\.1\.self_attn\.(q|v)_proj", trainable=("pooler",))
    assert wrapped == ["blocks.1.self_attn.q_proj", "blocks.1.self_attn.v_proj"]
    assert trainable_parameters(ours) == 2 * 2 * (32 + 32) + 32 * 32 + 32     # two adapters + the pooler
    with pytest.raises(ValueError, match="no linear layer matches"):
        apply_lora(ours, targets=("nope",))
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(torch.nn.Linear(3, 3), r=0)
    with pytest.raises(TypeError, match="in_features"):
        LoRALinear(torch.nn.ReLU())


def test_remove_lora_gives_the_base_back():
    _, ours, _ = _tiny_llama()
    ids = torch.randint(0, 97, (1, 6))
    with torch.no_grad():
        y = ours(ids)
    apply_lora(ours, r=2, targets=("q_proj",))
    for layer in lora_layers(ours).values():
        torch.nn.init.normal_(layer.lora_B.weight)
    merge_lora(ours)
    from deepatlas.tuning.lora import remove_lora
    remove_lora(ours)
    assert not lora_layers(ours)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), y, atol=1e-5, rtol=1e-5)
