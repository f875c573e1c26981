"""Where a vision model looks (map place V6): Grad-CAM, saliency, attention rollout, the deletion test.

gradcam    Grad-CAM on any conv layer by name (Selvaraju et al. 2017)
saliency   vanilla gradients (Simonyan et al. 2014) and SmoothGrad (Smilkov et al. 2017)
rollout    attention rollout through a ViT's layers (Abnar & Zuidema 2020)
deletion   the deletion metric (Petsiuk et al. 2018): delete the top-ranked pixels first, watch the score
overlay    heat maps over images as PNG
cli        `deepatlas explain RUN_DIR --image N --method gradcam|saliency|rollout`
"""
