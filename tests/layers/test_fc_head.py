import torch

from vertebra.layers import FullyConnectedHead


def test_fc6_to_fc8_over_a_pooled_grid():
    head = FullyConnectedHead(8, 5, 0.0, grid=2, hidden=16).eval()
    assert (head.fc6.in_features, head.fc6.out_features, head.fc8.out_features) == (32, 16, 5)
    x = torch.randn(3, 8, 7, 7)
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
    expected = head.fc8(torch.relu(head.fc7(torch.relu(head.fc6(pooled)))))
    torch.testing.assert_close(head(x), expected)
    torch.testing.assert_close(head(x, pre_logits=True), x.mean((2, 3)))


def test_reset_keeps_the_hidden_layers_and_zero_classes_drops_them():
    head = FullyConnectedHead(4, 3, 0.5, grid=1, hidden=8)
    fc6 = head.fc6
    head.reset(7)
    assert head.fc6 is fc6 and head.fc8.out_features == 7
    head.reset(0)
    assert head.fc6 is None and head(torch.randn(2, 4, 3, 3)).shape == (2, 4)


def test_dropout_placement():
    """torchvision's AlexNet drops fc6's inputs; the papers drop fc6's outputs (after ReLU)."""
    seen = {}
    x = torch.randn(64, 4, 1, 1)  # no exact zeros
    for inputs in (True, False):
        head = FullyConnectedHead(4, 2, 0.5, grid=1, hidden=8, dropout_inputs=inputs).train()
        head.fc6.register_forward_pre_hook(lambda m, args, inputs=inputs: seen.__setitem__(inputs, args[0]))
        head(x)
    assert (seen[True] == 0).any() and not (seen[False] == 0).any()
