"""vertebra: the classic computer-vision backbones, faithful to their papers."""
from . import models  # noqa: F401  (fills the registry)
from .analysis import count_macs, count_params, profile
from .backbone import Backbone, FeatureInfo
from .data_config import DataConfig, data_config
from .diagrams import draw
from .inference import optimize, quantize
from .registry import ModelCard, create_model, list_models, model_info
from .weights import load_weights, save_weights

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "model_info", "load_weights", "save_weights",
           "count_params", "count_macs", "profile", "optimize", "quantize", "draw", "Backbone", "FeatureInfo",
           "ModelCard",
           "DataConfig", "data_config"]
