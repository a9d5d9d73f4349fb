import pytest

from vertebra.layers import make_divisible


@pytest.mark.parametrize("value, divisor, expected", [
    (32, 8, 32), (33, 8, 32), (36, 8, 40), (17, 8, 16), (91.0, 8, 88), (24 * 1.4, 8, 32),
    (3, 8, 8),  # never below one divisor
    (9, 8, 16),  # 8 would lose more than 10% of 9 channels, so it rounds up
    (20, 16, 32),  # likewise: 16 < 0.9 x 20
])
def test_rounds_to_the_nearest_multiple_without_losing_ten_percent(value, divisor, expected):
    assert make_divisible(value, divisor) == expected


def test_min_value_and_bad_divisor():
    assert make_divisible(4, 8, min_value=16) == 16
    with pytest.raises(ValueError, match="divisor"):
        make_divisible(10, 0)
