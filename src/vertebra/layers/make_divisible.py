"""Channel rounding used by the width-multiplied families (MobileNet, EfficientNet, ...)."""


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``min_value``.

    The TensorFlow rule the MobileNet papers use: round to nearest, but if that would
    drop more than ``1 - round_limit`` (10%) of the channels, go up one step instead.
    """
    if divisor <= 0:
        raise ValueError(f"divisor must be a positive integer, got {divisor}")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded
