"""Parameters and multiply-accumulates, counted by torch.utils.flop_counter.

Convention: a MAC is one multiply-add of a convolution or matrix product, the unit in
which torchvision, timm and the papers quote cost ("FLOPs" in most papers are MACs).
torch's counter reports 2 FLOPs per MAC and counts only those ops, so BatchNorm,
activations, pooling and element-wise sums are not included.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (learned tensors; BatchNorm running statistics are buffers)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int | tuple[int, int], batch_size: int = 1,
               in_chans: int | None = None) -> int:
    """Multiply-accumulates of one eval-mode forward pass at ``input_size``, per batch.

    Works on a model whose parameters live on the ``meta`` device too, which costs no compute:
    ``with torch.device("meta"): model = create_model(...)``.
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    in_chans = in_chans or getattr(model, "in_chans", 3)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(batch_size, in_chans, height, width, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def saved_tensor_bytes(fn, *args):
    """``fn(*args)`` and the bytes autograd keeps for its backward pass: the activation memory
    of training.  A tensor saved by two operations (a ReLU's output, the next conv's input)
    counts once."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args)
    return out, sum(storages.values())
