"""Fast inference: BatchNorm folding, channels_last, bfloat16, torch.compile."""
from .optimize import InferenceModel, fold_batchnorm, optimize

__all__ = ["optimize", "fold_batchnorm", "InferenceModel"]
