"""Methods that design backbones: compound scaling (and, later, architecture search and NetAdapt)."""
from .scaling import CompoundScaling, ScalingCoefficients, constrained_grid, scale_model, scale_stages

__all__ = ["CompoundScaling", "ScalingCoefficients", "constrained_grid", "scale_model", "scale_stages"]
