"""Deployment and scale: distributed training on torch.distributed (S6), ONNX and the browser (S5)."""
