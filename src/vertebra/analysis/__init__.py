"""Cost analysis: parameters and multiply-accumulates (profile and guidelines build on these)."""
from .flops import count_macs, count_params

__all__ = ["count_macs", "count_params"]
