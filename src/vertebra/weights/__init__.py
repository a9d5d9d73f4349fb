"""Weights: vertebra's safetensors format and the key maps that read torchvision/timm checkpoints."""
from .io import LoadReport, adapt_input_conv, classes_in, load_weights, read_weights, save_weights
from .keymaps import KEYMAPS, KeyMap

__all__ = ["save_weights", "load_weights", "read_weights", "classes_in", "LoadReport", "adapt_input_conv",
           "KEYMAPS", "KeyMap"]
