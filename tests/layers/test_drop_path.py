import pytest
import torch

from vertebra.layers import DropPath, drop_path_rates


def test_identity_in_eval_and_at_zero():
    x = torch.randn(4, 3, 2, 2)
    assert torch.equal(DropPath(0.5).eval()(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)


def test_drops_whole_samples_and_keeps_the_expectation():
    layer = DropPath(0.25).train()
    x = torch.ones(20000, 2, 3, 3)
    out = layer(x)
    per_sample = out.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 1 / 0.75).all(1)
    assert bool((dropped | kept).all())  # each sample is dropped whole or kept whole
    assert abs(dropped.float().mean().item() - 0.25) < 0.02
    assert abs(out.mean().item() - 1.0) < 0.03


def test_rates_and_validation():
    assert drop_path_rates(5, 0.2) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert drop_path_rates(1, 0.2) == [0.0]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0)
