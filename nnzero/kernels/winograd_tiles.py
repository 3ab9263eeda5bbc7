"""The steps the batch-minor Winograd kernels share: F(4x4, 3x3)
(``winograd_f43.py``) and F(4x4, 2x2) over the input's phases
(``winograd_s2.py``), both with 4x4 output tiles numbered batch-minor,
t = (th*TW + tw)*N + n. Channel planes into and out of a zero-padded
batch-minor buffer, output tiles out of their (16, T) rows, and dY gathered
into tile cells a block of tile rows at a time for the output gradients.
"""
from __future__ import annotations

import numpy as np

from ._jit import njit


@njit
def _tile_offsets(n, th_n, tw_n, t_all):
    """Where output cell (r, q) of sample 0 sits in a (16, T) row block: row
    (r%4)*4 + q%4, column ((r//4)*TW + q//4)*n (plus the sample)."""
    rowoff = np.empty(4 * th_n, dtype=np.int64)
    coloff = np.empty(4 * tw_n, dtype=np.int64)
    for r in range(4 * th_n):
        rowoff[r] = (r % 4) * 4 * t_all + (r // 4) * tw_n * n
    for q in range(4 * tw_n):
        coloff[q] = (q % 4) * t_all + (q // 4) * n
    return rowoff, coloff


@njit
def _planes_in(x, ch, pt, pl, dk):
    """Channel ch's planes of every sample into the batch-minor padded buffer
    dk (rows, cols*n), at (pt, pl); the cells past the image keep their zeros.
    Each plane is read in order (reading one cell of every sample at once,
    planes C*H*W apart, took 2.5x as long)."""
    n, _, h, w = x.shape
    rows, cols = dk.shape[0], dk.shape[1] // n
    r_lo, r_hi = max(0, -pt), min(h, rows - pt)
    q_lo, q_hi = max(0, -pl), min(w, cols - pl)
    for b in range(n):
        for r in range(r_lo, r_hi):
            src = x[b, ch, r]
            dst = dk[r + pt, (q_lo + pl) * n + b:]
            for q in range(q_hi - q_lo):
                dst[q * n] = src[q_lo + q]


@njit
def _planes_out(acc, ch, pt, pl, dx):
    """dx's channel ch of every sample from the batch-minor sums acc (rows,
    cols*n) at (pt, pl); cells no tile reached get 0."""
    n, _, h, w = dx.shape
    rows, cols = acc.shape[0], acc.shape[1] // n
    zero = dx.dtype.type(0)   # a literal 0 would make the select below a float64
    for b in range(n):
        for r in range(h):
            rr = r + pt
            for q in range(w):
                qp = q + pl
                dx[b, ch, r, q] = acc[rr, qp * n + b] if (rr < rows and qp < cols) else zero


@njit
def _tiles_out(yf, rowoff, coloff, oc, y):
    """Output channel oc of every sample from its (16, T) tile rows yf (flat)."""
    n, _, oh, ow = y.shape
    for b in range(n):
        for r in range(oh):
            dst = y[b, oc, r]
            ro = rowoff[r] + b
            for q in range(ow):
                dst[q] = yf[ro + coloff[q]]


# The output gradients gather dY and transform it a block of tile rows at a
# time, TILE_BLOCK tiles or the fewest whole tile rows past it: then the
# gathered cells and the first transform's rows stay in the core's L1 cache
# until the second transform reads them. Over every tile at once (conv_mid's
# 16 samples: 1024 tiles, 64 KB of gathered cells and 96 KB of rows a
# channel) F(4x4, 3x3)'s took 3.0 ms on one thread; by blocks of 256 tiles
# 1.5-1.6 (by 64 and 128 tiles 2.6-3.7, by 512 1.5, bit for bit the same
# values). One thread, old against new: F(4x4, 3x3) 8 samples of 64 channels
# on 32x32 0.77-0.94 against 0.59-0.70 ms, 32 of 16 on 16x16 0.21-0.24
# against 0.15-0.17, 16 of 128 on 16x16 0.80-0.88 against 0.63-0.76; the
# stride-2 family 16 samples of 64 channels on 32x32 outputs 2.4 against
# 0.95-1.16, while on 16x16 with 16 channels (a block or two) it lost 6-13 us
# (0.03-0.04 ms against 0.03).
TILE_BLOCK = 256


@njit
def _block_rows(n, th_n, tw_n):
    """Tile rows a block of the output gradient: see TILE_BLOCK."""
    return max(1, min(th_n, TILE_BLOCK // (n * tw_n)))


@njit
def _tiles_in(dy, oc, th0, th1, g, coloff):
    """dY's channel oc of every sample, tile rows th0 ... th1-1, into the
    (16, (th1-th0)*TW*N) tile cells g: cell (a, j) of a tile in row 4a + j,
    the tiles batch-minor; ``coloff[q]`` is column q's place in g's first
    row block (``_cell_offsets``). Rows past the output are set to zero;
    columns past it are never written (g starts as zeros)."""
    n, _, oh, ow = dy.shape
    per_row = n * ((ow + 3) // 4)
    stride = g.shape[1]
    gf = g.ravel()
    zero = dy.dtype.type(0)
    for th in range(th0, th1):
        r0 = 4 * th
        rows = min(4, oh - r0)
        off = (th - th0) * per_row
        for a in range(rows, 4):
            for j in range(4):
                gr = g[4 * a + j]
                for t in range(off, off + per_row):
                    gr[t] = zero
        for b in range(n):
            for a in range(rows):
                src = dy[b, oc, r0 + a]
                base = 4 * a * stride + off + b
                for q in range(ow):
                    gf[base + coloff[q]] = src[q]


@njit
def _cell_offsets(n, ow, stride):
    """Where output column q of sample 0 sits in the tile cells of
    ``_tiles_in`` (rows ``stride`` apart): row q%4, column (q//4)*n."""
    coloff = np.empty(ow, dtype=np.int64)
    for q in range(ow):
        coloff[q] = (q % 4) * stride + (q // 4) * n
    return coloff
