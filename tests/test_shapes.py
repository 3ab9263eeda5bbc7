"""Output-size formulas against brute-force window counting and PyTorch's examples."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnzero.shapes import (conv_output_size, conv_transpose_output_size, pool_output_size,
                           same_padding)


def windows_that_fit(size, k, s, p, d):
    """Count the window starts whose whole dilated window lies in the padded input."""
    span = d * (k - 1) + 1
    return sum(1 for start in range(0, size + 2 * p, s) if start + span <= size + 2 * p)


@given(size=st.integers(1, 30), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3),
       d=st.integers(1, 3))
def test_conv_output_size_counts_windows(size, k, s, p, d):
    expected = windows_that_fit(size, k, s, p, d)
    if expected == 0:
        with pytest.raises(ValueError, match="larger than the padded input"):
            conv_output_size(size, k, s, p, d)
    else:
        assert conv_output_size(size, k, s, p, d) == expected
        assert conv_output_size((size, size + 1), (k, 1), (s, 1), (p, 0), (d, 1)) == (
            expected, size + 1)


def test_notes_example_cifar_conv():
    assert conv_output_size((32, 32), 3, 1, 0) == (30, 30)


def test_same_and_valid_padding():
    assert conv_output_size(7, 4, padding="same") == 7
    assert conv_output_size((5, 6), (2, 3), padding="same", dilation=(1, 2)) == (5, 6)
    assert conv_output_size(7, 3, padding="valid") == 5
    assert same_padding(4) == ((1, 2), (1, 2))  # the extra cell goes bottom/right
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        conv_output_size(7, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="'valid' or 'same', got 'full'"):
        conv_output_size(7, 3, padding="full")


@given(size=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 3),
       d=st.integers(1, 3), op=st.integers(0, 3))
def test_conv_transpose_inverts_conv_size(size, k, s, p, d, op):
    if op >= s and op >= d:
        with pytest.raises(ValueError, match="output_padding must be smaller"):
            conv_transpose_output_size(size, k, s, p, op, d)
        return
    out = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
    if out < 1:
        with pytest.raises(ValueError, match="too small"):
            conv_transpose_output_size(size, k, s, p, op, d)
        return
    assert conv_transpose_output_size(size, k, s, p, op, d) == out
    if op < s:  # convolution maps the transposed output back to the input size
        assert conv_output_size(out, k, s, p, d) == size


@pytest.mark.parametrize("size,k,s,p,floor,ceil", [
    (5, 2, 2, 0, 2, 3), (5, 2, 2, 1, 3, 3), (6, 3, 2, 1, 3, 4), (5, 1, 3, 0, 2, 2),
    (32, 2, 2, 0, 16, 16), (32, 3, 2, 1, 16, 17)])
def test_pool_output_size_pytorch_examples(size, k, s, p, floor, ceil):
    assert pool_output_size(size, k, s, p) == floor
    assert pool_output_size(size, k, s, p, ceil_mode=True) == ceil


@given(size=st.integers(1, 20), k=st.integers(1, 5), s=st.integers(1, 4), d=st.integers(1, 3),
       ceil=st.booleans(), data=st.data())
def test_pool_output_size_windows_start_inside(size, k, s, d, ceil, data):
    p = data.draw(st.integers(0, k // 2))
    span = d * (k - 1) + 1
    starts = range(-p, size + p, s)
    if ceil:  # a window may hang past the end by < s cells but must start inside the input
        expected = sum(1 for a in starts if a + span <= size + p + s - 1 and a < size)
    else:
        expected = sum(1 for a in starts if a + span <= size + p)
    if expected < 1:
        with pytest.raises(ValueError, match="too small"):
            pool_output_size(size, k, s, p, d, ceil)
    else:
        assert pool_output_size(size, k, s, p, d, ceil) == expected


def test_pool_errors():
    with pytest.raises(ValueError, match=r"padding must be at most half the kernel size"):
        pool_output_size(8, 3, padding=2)
    with pytest.raises(ValueError, match="padding must be at most half"):
        pool_output_size(8, 3, padding=2, dilation=2)  # PyTorch 2.13: raw kernel rule
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        pool_output_size(8, 0)
    with pytest.raises(ValueError, match="stride must be positive"):
        pool_output_size(8, 2, stride=0)
    with pytest.raises(ValueError, match="too small"):
        pool_output_size(2, 5, padding=1)
    with pytest.raises(ValueError, match="padding must be non-negative"):
        conv_output_size(8, 3, padding=-1)
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair"):
        conv_output_size(8, 2.5)
