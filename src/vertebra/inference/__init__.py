"""Fast inference: BatchNorm folding, channels_last, bfloat16, torch.compile, int8."""
from .optimize import InferenceModel, fold_batchnorm, optimize
from .quantize import load_quantized, quantize, save_quantized

__all__ = ["optimize", "quantize", "save_quantized", "load_quantized", "fold_batchnorm", "InferenceModel"]
