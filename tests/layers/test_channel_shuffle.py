import pytest
import torch

from vertebra.layers import ChannelShuffle, channel_shuffle, concat_shuffle


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


@pytest.mark.parametrize("groups", [2, 3])
def test_a_channels_last_tensor_is_shuffled_in_its_own_layout(groups):
    x = torch.randn(2, 6, 3, 5, requires_grad=True)
    shuffled = channel_shuffle(x, groups)
    x_last = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    shuffled_last = channel_shuffle(x_last, groups)
    assert shuffled_last.is_contiguous(memory_format=torch.channels_last)  # no NCHW copy for the next conv to undo
    assert torch.equal(shuffled_last, shuffled)
    weights = torch.randn_like(shuffled)
    (shuffled * weights).sum().backward()
    (shuffled_last * weights).sum().backward()
    assert torch.equal(x_last.grad, x.grad)


@pytest.mark.parametrize("channels_last", [False, True])
def test_concat_shuffle_is_the_concatenation_then_a_two_group_shuffle(channels_last):
    layout = torch.channels_last if channels_last else torch.contiguous_format
    whole = torch.randn(2, 8, 3, 4).contiguous(memory_format=layout)
    kept, branch = whole.chunk(2, dim=1)  # as ShuffleNet V2's unit splits its input
    branch = (branch * 2).contiguous(memory_format=layout)
    out = concat_shuffle(kept, branch)
    assert torch.equal(out, channel_shuffle(torch.cat((kept, branch), 1), 2))
    assert torch.equal(out[:, 0::2], kept) and torch.equal(out[:, 1::2], branch)
    assert out.is_contiguous(memory_format=layout)
