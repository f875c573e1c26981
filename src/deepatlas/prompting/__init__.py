"""L8 — prompting: k-shot prompts (Brown et al. 2020), chain-of-thought (Wei et al. 2022) and
self-consistency (Wang et al. 2023) with SmolLM2 on tasks with exact answers."""
