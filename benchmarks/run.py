"""The benchmark harness: ``python -m benchmarks`` (or ``python benchmarks/run.py``).

For every workload and implementation (nnzero; nnzero with its NumPy twins,
measured in a subprocess with NNZERO_JIT=0; PyTorch CPU when importable; the
textbook NumPy baseline; for convolutions without groups, ``products``: the
layer's three matrix products alone, one np.matmul each over the batch, the
floor under any im2col-style implementation) it reports, in float32:

* the first call's time (numba compilation happens there), separately;
* forward and forward+backward: median of ``--repeats`` timed calls, with the
  min-max spread, the implementations taking turns (see ``measure_workload``);
* GFLOP/s of forward+backward and its share of the machine's float32 GEMM
  rate, which this run measures itself with ``np.matmul``;
* the peak memory the operation allocates (tracemalloc; NumPy arrays only,
  so not shown for PyTorch);
* ``nnzero/this``: nnzero's forward+backward time divided by this row's
  (1.30 next to torch: nnzero takes 1.3x PyTorch's time; 0.10 next to the
  textbook: nnzero is 10x faster; 1.15 next to products: nnzero takes 15%
  longer than its products alone would).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

if __package__ in (None, ""):  # run as a script: make "benchmarks" importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

IMPLS = ("nnzero", "nnzero-numpy", "torch", "textbook", "products")


def set_threads(n):
    """Apply the thread count to BLAS (threadpoolctl), numba and torch alike."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    notes = []
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        notes.append("threadpoolctl not installed: BLAS threads set by environment only")
    import nnzero.kernels  # noqa: F401  (picks numba's threading layer before threads start)
    import numba
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass
    return notes


def blas_name():
    try:
        from threadpoolctl import threadpool_info
        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if info:
            i = info[0]
            return f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
    except ImportError:
        pass
    return "unknown BLAS"


def gemm_rate(quick, repeats):
    """The machine's float32 GEMM rate in GFLOP/s (median of repeats, np.matmul)."""
    import numpy as np
    n = 256 if quick else 1536
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    np.matmul(a, b)
    times = []
    for _ in range(max(repeats, 3)):
        t = time.perf_counter()
        np.matmul(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _timed(fn, times):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)


def _peak_mib(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()


ROUNDS = 3
PAUSE_S = 0.25   # > OpenBLAS's default 2**28-cycle spin after a call
WARM_S = 0.2     # > the ~50 ms this machine's cores take to come back up to speed


def _warm(fn, seconds):
    """Call ``fn`` until ``seconds`` have passed (at least once)."""
    end = time.perf_counter() + seconds
    fn()
    while time.perf_counter() < end:
        fn()


def measure_workload(workload, impls, quick, repeats):
    """One row per implementation that exists for ``workload``.

    The machine's speed drifts within a run (the GEMM rate moved by a third
    between runs here), so the implementations are timed in turn: ROUNDS
    rounds, the order rotating each round, every implementation's block of
    ~repeats/ROUNDS calls after a pause and WARM_S seconds of untimed calls.
    The pause lets threads the previous block left spinning go to sleep:
    OpenBLAS's workers (the textbook's products) spin ~0.1 s after a call and
    slowed the next block's conv_stem by half. The warm-up is by time, not by
    count, because after any pause the first ~50 ms of work run slow here
    (nnzero's conv_stem step: 10-13 ms for its first five calls after a
    0.25 s sleep, then 5.6-6.3; PyTorch's likewise at times), so a block of
    short calls after one warm-up call timed the machine waking up rather
    than the code. Median, min and max are over all of an implementation's
    timed calls.
    """
    cases = {}
    for impl in impls:
        builder = workload.builders.get("nnzero" if impl == "nnzero-numpy" else impl)
        case = builder(quick) if builder else None
        if case is not None:
            cases[impl] = case
    if not cases:
        return []
    first = {}
    for impl, case in cases.items():
        t = time.perf_counter()
        case.step()
        first[impl] = time.perf_counter() - t
    rounds = 1 if quick else min(ROUNDS, repeats)
    per = [repeats // rounds + (r < repeats % rounds) for r in range(rounds)]
    fwd = {impl: [] for impl in cases}
    step = {impl: [] for impl in cases}
    order = list(cases)
    for r in range(rounds):
        shift = r % len(order)
        for impl in order[shift:] + order[:shift]:
            case = cases[impl]
            if not quick:
                time.sleep(PAUSE_S)
            _warm(case.step, 0 if quick else WARM_S)
            for _ in range(per[r]):
                _timed(case.forward, fwd[impl])
            case.step()
            for _ in range(per[r]):
                _timed(case.step, step[impl])
    rows = []
    for impl, case in cases.items():
        row = {"workload": workload.name, "impl": impl, "first_s": first[impl],
               "fwd_s": statistics.median(fwd[impl]), "fwd_min_s": min(fwd[impl]),
               "fwd_max_s": max(fwd[impl]), "step_s": statistics.median(step[impl]),
               "step_min_s": min(step[impl]), "step_max_s": max(step[impl]),
               "peak_mib": None if impl == "torch" else _peak_mib(case.step)}
        if workload.flops is not None:
            row["gflops"] = workload.flops(quick) / row["step_s"] / 1e9
        rows.append(row)
    return rows


def run_twins(args):
    """nnzero with NNZERO_JIT=0, in a subprocess (the switch is read at import)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "twins.json")
        cmd = [sys.executable, "-m", "benchmarks", "--impl", "nnzero", "--json", out,
               "--repeats", str(args.repeats), "--threads", str(args.threads), "--no-header"]
        cmd += ["--quick"] if args.quick else []
        for name in args.only or []:
            cmd += ["--only", name]
        env = dict(os.environ, NNZERO_JIT="0")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        subprocess.run(cmd, env=env, cwd=root, check=True, stdout=subprocess.DEVNULL)
        with open(out) as fh:
            rows = json.load(fh)["rows"]
    for r in rows:
        r["impl"] = "nnzero-numpy"
    return rows


def _cell(value, fmt, width):
    return f"{value:>{width}{fmt}}" if value is not None else f"{'-':>{width}}"


def format_table(workloads, rows, peak):
    by = {(r["workload"], r["impl"]): r for r in rows}
    head = (f"{'workload':<15} {'impl':<13} {'first ms':>9} {'fwd ms':>9} "
            f"{'fwd+bwd ms':>10} {'(min-max)':>17} {'GFLOP/s':>8} {'%GEMM':>6} "
            f"{'peak MiB':>8} {'nnzero/this':>11}")
    lines = [head, "-" * len(head)]
    for w in workloads:
        base = by.get((w.name, "nnzero"))
        for impl in IMPLS:
            r = by.get((w.name, impl))
            label = w.name if impl == "nnzero" else ""
            if r is None:
                if impl in ("nnzero", "torch", "textbook"):
                    lines.append(f"{label:<15} {impl:<13} {'-':>9}")
                continue
            spread = f"{r['step_min_s'] * 1e3:.2f}-{r['step_max_s'] * 1e3:.2f}"
            gf = r.get("gflops")
            ratio = (f"{base['step_s'] / r['step_s']:11.2f}" if base and impl != "nnzero"
                     else f"{'':>11}")
            lines.append(" ".join([
                f"{label:<15} {impl:<13}", _cell(r["first_s"] * 1e3, ".2f", 9),
                _cell(r["fwd_s"] * 1e3, ".2f", 9), _cell(r["step_s"] * 1e3, ".2f", 10),
                f"{spread:>17}", _cell(gf, ".1f", 8),
                _cell(100 * gf / peak if gf else None, ".0f", 5) + ("%" if gf else " "),
                _cell(r["peak_mib"], ".1f", 8), ratio]))
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="BLAS, numba and torch threads")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run workloads whose name starts with NAME (repeatable)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (CI smoke run)")
    p.add_argument("--impl", choices=["nnzero", "torch", "textbook", "products"],
                   action="append",
                   help="only these implementations (default: all)")
    p.add_argument("--no-twins", action="store_true", help="skip the NNZERO_JIT=0 subprocess")
    p.add_argument("--no-header", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = 1
    if args.repeats < 1 or args.threads < 1:
        p.error("--repeats and --threads must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    notes = set_threads(args.threads)
    from .workloads import all_workloads

    workloads = [w for w in all_workloads()
                 if not args.only or any(w.name.startswith(o) for o in args.only)]
    if not workloads:
        print(f"no workload matches {args.only}", file=sys.stderr)
        return 2
    impls = args.impl or ["nnzero", "torch", "textbook", "products"]
    peak = gemm_rate(args.quick, args.repeats)
    if not args.no_header:
        import numpy as np
        print(f"nnzero benchmarks  {time.strftime('%Y-%m-%d')}  {platform.processor() or platform.machine()}"
              f"  {os.cpu_count()} cores  threads={args.threads}  numpy {np.__version__}"
              f"  {blas_name()}")
        print(f"float32 GEMM (np.matmul): {peak:.1f} GFLOP/s   repeats={args.repeats}"
              + ("   QUICK (tiny sizes)" if args.quick else ""))
        for n in notes:
            print(f"note: {n}")
    rows = []
    for w in workloads:
        rows += measure_workload(w, impls, args.quick, args.repeats)
    if "nnzero" in impls and not args.no_twins and not args.impl:
        rows += run_twins(args)
    if not args.no_header:
        print(format_table(workloads, rows, peak))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"gemm_gflops": peak, "threads": args.threads, "quick": args.quick,
                       "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
