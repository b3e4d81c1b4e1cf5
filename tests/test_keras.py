"""fer_bench.keras: Keras layer semantics shared by Keras papers, checked against values computed by hand."""

import torch
from torch import nn

from fer_bench.keras import MaxPool2dSame


def grid(n: int, sign: int = 1) -> torch.Tensor:
    """x[i, j] = 5i + j (or -(5i + j) - 1), one image, one channel."""
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    v = (5 * i + j).float()
    return (v if sign > 0 else -v - 1)[None, None]


def test_odd_side_pads_one_row_above_and_below():
    # 5x5, 3x3/2 'same': total padding 2 -> one each side; windows over rows/cols -1..1, 1..3, 3..5
    assert MaxPool2dSame(3, 2)(grid(5))[0, 0].tolist() == [[6, 8, 9], [16, 18, 19], [21, 23, 24]]
    # decreasing values: each window's max is its top-left real pixel, and -inf padding never wins (zero would)
    assert MaxPool2dSame(3, 2)(grid(5, -1))[0, 0].tolist() == [[-1, -2, -4], [-6, -7, -9], [-16, -17, -19]]
    # the same windows as PyTorch's symmetric padding=1 on an odd side
    assert torch.equal(MaxPool2dSame(3, 2)(grid(5, -1)), nn.MaxPool2d(3, 2, padding=1)(grid(5, -1)))


def test_even_side_pads_one_row_below_only():
    # 4x4 (x = 5i + j): total padding 1, at the bottom/right; windows over rows/cols 0..2, 2..4
    assert MaxPool2dSame(3, 2)(grid(4))[0, 0].tolist() == [[12, 13], [17, 18]]
    assert MaxPool2dSame(3, 2)(grid(4, -1))[0, 0].tolist() == [[-1, -3], [-11, -13]]
    assert not torch.equal(MaxPool2dSame(3, 2)(grid(4, -1)), nn.MaxPool2d(3, 2, padding=1)(grid(4, -1)))


def test_output_side_is_ceil_of_side_over_stride():
    for n, out in ((48, 24), (24, 12), (6, 3), (3, 2), (7, 4), (1, 1)):
        assert MaxPool2dSame(3, 2)(torch.zeros(1, 1, n, n)).shape[-1] == out
