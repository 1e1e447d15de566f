"""The core's logit summary (what the llama.cpp engine's logprobs come from) against NumPy."""

import ctypes

import numpy as np
import pytest

from mullama._core import summarize_logits


@pytest.mark.parametrize("n", [1, 9, 16, 49_152, 151_936])
def test_summary_matches_a_float64_log_softmax(n):
    rng = np.random.default_rng(n)
    logits = (rng.standard_normal(n) * 8).astype(np.float32)
    argmax, top, log_sum_exp = summarize_logits(logits)
    wide = logits.astype(np.float64)
    assert argmax == int(np.argmax(logits)) and top == logits[argmax]
    expected = wide.max() + np.log(np.exp(wide - wide.max()).sum())
    assert log_sum_exp == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_a_view_over_engine_memory_is_read_in_place():
    values = (ctypes.c_float * 5)(0.0, 2.0, -1.0, 2.0, 0.5)
    view = np.ctypeslib.as_array(ctypes.cast(values, ctypes.POINTER(ctypes.c_float)), (5,))
    argmax, top, _ = summarize_logits(view.view(np.float32))
    assert (argmax, top) == (1, 2.0)  # the first of equal maxima, as numpy.argmax


def test_rows_without_a_distribution_have_no_summary():
    assert summarize_logits(np.zeros(0, np.float32)) is None
    assert summarize_logits(np.array([0.0, np.nan], np.float32)) is None


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (np.zeros((2, 2), np.float32), "1-D"),
        (np.zeros(8, np.float32)[::2], "contiguous"),
        (np.zeros(4, np.float64), "f32"),
    ],
)
def test_other_buffers_are_refused_by_name(value, error):
    with pytest.raises((ValueError, BufferError), match=error):
        summarize_logits(value)
