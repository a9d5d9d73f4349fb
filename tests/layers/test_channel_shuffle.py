import pytest
import torch

from vertebra.layers import ChannelShuffle, channel_shuffle


def test_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)  # groups of 3: [0 1 | 2 3 | 4 5] with g=3 -> [0 2 4 1 3 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_is_a_permutation_inverted_by_the_transposed_shuffle():
    x = torch.randn(2, 12, 3, 3)
    assert torch.equal(channel_shuffle(channel_shuffle(x, 3), 4), x)


def test_groups_must_divide_the_channels():
    with pytest.raises(ValueError, match="10 channels do not split into 3 groups"):
        channel_shuffle(torch.randn(1, 10, 2, 2), 3)
