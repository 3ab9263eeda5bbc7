"""Hypothesis profiles: 'ci' (default, a few minutes on 2 cores) and 'thorough'.

Select with HYPOTHESIS_PROFILE=thorough for a longer local run.
"""
import os

import numba
import pytest
from hypothesis import HealthCheck, settings

from nnzero.functional import _threads
from nnzero.kernels import _pool

settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", max_examples=300, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def split_every_kernel_call():
    """Small test arrays would run on one thread (``_pool.MIN_SPLIT_WORK``):
    with this fixture every ``*_numba`` kernel call splits its units over the
    threads, so the split is what the kernel tests check against the twins."""
    old = _pool.MIN_SPLIT_WORK
    _pool.MIN_SPLIT_WORK = 0
    yield
    _pool.MIN_SPLIT_WORK = old


@pytest.fixture(scope="session", autouse=True)
def split_every_batch():
    """Layers below ``_threads.MIN_SPLIT_MACS`` multiply-adds run whole on the
    calling thread, and nearly every test's layer is that small: the suite
    sets the threshold to 0, so that the batch split stays what the tests
    check. ``tests/test_small_calls.py`` checks the threshold itself, with the
    default this fixture returns."""
    default = _threads.MIN_SPLIT_MACS
    _threads.MIN_SPLIT_MACS = 0
    yield default
    _threads.MIN_SPLIT_MACS = default


@pytest.fixture
def numba_threads():
    """``numba_threads(n)`` sets numba's thread count for this test only."""
    old = numba.get_num_threads()
    yield numba.set_num_threads
    numba.set_num_threads(old)
