"""Efficient adaptation: LoRA (lora.py), distillation (distill.py), pruning (prune.py)."""
