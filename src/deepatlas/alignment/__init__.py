"""Alignment (map places T3-T5): SFT with the loss on responses, a Bradley-Terry reward model,
PPO with a KL penalty to the reference (RLHF / RLAIF), and DPO / IPO — on a GPT deepatlas
pretrains itself (deepatlas.alignment.base) and on generated instruction and preference data."""
