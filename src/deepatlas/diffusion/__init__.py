"""Diffusion: noise schedules and the forward process (schedule.py), DDPM and DDIM reverse steps
(samplers.py), the sampling loop with guidance, SDEdit and inpainting (sampling.py).

The network (models/unet.py) is kept apart: a sampler only needs `model(x_t, t, labels)`."""
