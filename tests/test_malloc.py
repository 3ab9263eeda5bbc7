"""glibc's malloc thresholds (nnzero/_malloc.py): set by ``import nnzero`` so
that arrays freed and allocated again each call keep their pages; left alone
when the user opts out or sets them."""
import os
import subprocess
import sys

import pytest

from nnzero import _malloc

GLIBC = _malloc._glibc()

# A fresh process (malloc's state depends on everything the process freed
# before): one 600 KiB array freed (glibc's own rule then puts the trim
# threshold at 1.2 MiB), then rounds of three such arrays allocated, written
# and freed, as a layer's call does with its outputs and temporaries. Prints
# whether nnzero set the thresholds and the minor page faults per round.
ROUNDS = """
import resource, numpy as np
import nnzero
from nnzero import _malloc
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
n = 600 * 1024 // 4
a = np.ones(n, np.float32)
del a
f0 = faults()
for _ in range(100):
    bufs = [np.ones(n, np.float32) for _ in range(3)]
    del bufs
print(_malloc.TUNED[0], (faults() - f0) / 100)
"""


def _run(**env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("NNZERO_MALLOC", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                         "GLIBC_TUNABLES")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", ROUNDS], env=full, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_import_sets_the_thresholds_and_the_pages_stay():
    tuned, faults = _run()
    assert tuned
    # 1.8 MiB a round is ~450 pages: with the heap trimmed each round they
    # would be faulted in again (measured ~270 a round without the thresholds)
    assert faults < 30, faults


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
@pytest.mark.parametrize("env", [{"NNZERO_MALLOC": "0"},
                                 {"MALLOC_TRIM_THRESHOLD_": "1048576"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}])
def test_left_alone_when_opted_out_or_set_by_the_environment(env):
    tuned, _ = _run(**env)
    assert not tuned


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(_malloc, "_glibc", lambda: False)
    monkeypatch.setattr(_malloc, "TUNED", [False])
    assert _malloc.steady_malloc() is False
