"""Training: data, the loop, checkpoints that survive a kill, distributed data-parallel, plots."""
from .data import DataSplits, ImageFolder, digits, load_data
from .loop import TrainConfig, TrainResult, evaluate, train

__all__ = ["train", "TrainConfig", "TrainResult", "evaluate", "digits", "load_data", "ImageFolder", "DataSplits"]
