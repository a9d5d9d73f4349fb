"""Cost analysis: parameters, MACs, memory access cost, activations and latency."""
from .flops import count_macs, count_params, saved_tensor_bytes
from .gates import gate_activations, plot_gates
from .profile import LayerCost, Profile, measure_latency, profile

__all__ = ["count_macs", "count_params", "profile", "Profile", "LayerCost", "measure_latency", "saved_tensor_bytes", "gate_activations", "plot_gates"]
