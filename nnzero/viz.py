"""Looking at what layers do: image grids, PNG files, and a log writer.

``make_grid`` tiles a batch (N, C, H, W) of any value range into one image
(C, H', W') in [0, 1]; batches whose C is not 1 or 3 are shown as feature
maps, one tile per channel, one row per sample. ``save_images`` writes it as
a PNG through Pillow. ``LogWriter`` has TensorBoard SummaryWriter's method
names and writes PNGs plus a self-contained ``index.html`` (inline SVG charts,
relative image links; nothing is fetched), and also TensorBoard event files
when ``tensorboardX`` is installed (extra ``tensorboard``).
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image


def _scale(x, value_range=None):
    lo, hi = (float(x.min()), float(x.max())) if value_range is None else value_range
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float64) if value_range is None else np.clip(
            (x - lo) * 0, 0, 1)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def make_grid(batch, nrow=8, padding=2, normalize=True, scale_each=False, value_range=None,
              pad_value=0.0, feature_maps=None):
    """Tile ``batch`` into one (C, H', W') float image in [0, 1].

    normalize: min-max scale the values (over the whole batch, or per image
    with ``scale_each``, or over ``value_range``); otherwise values are clipped
    to [0, 1]. ``feature_maps`` (default: when C is not 1 or 3) shows every
    channel as its own grey tile; a row holds as many whole samples as fit in
    ``nrow`` tiles (at least one).
    """
    x = np.asarray(batch, dtype=np.float64)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or min(x.shape[1:]) < 1:
        raise ValueError(f"make_grid: expected (N, C, H, W), (C, H, W) or (H, W), "
                         f"got shape {np.shape(batch)}")
    n, c, h, w = x.shape
    if feature_maps is None:
        feature_maps = c not in (1, 3)
    if feature_maps:  # whole samples per row: as many as fit in nrow tiles (at least one)
        x = x.reshape(n * c, 1, h, w)
        nrow = c * max(1, nrow // c)
    if normalize:
        x = (np.stack([_scale(img, value_range) for img in x]) if scale_each
             else _scale(x, value_range))
    else:
        x = np.clip(x, 0.0, 1.0)
    count, ch = x.shape[0], x.shape[1]
    cols = max(1, min(nrow, count))
    rows = math.ceil(count / cols)
    grid = np.full((ch, rows * (h + padding) + padding, cols * (w + padding) + padding),
                   float(pad_value))
    for k in range(count):
        r, q = divmod(k, cols)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top:top + h, left:left + w] = x[k]
    return grid


def to_uint8(grid):
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8 for Pillow."""
    img = np.round(np.clip(grid, 0, 1) * 255).astype(np.uint8)
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def save_images(path, batch, upscale=1, **grid_kwargs):
    """Save ``make_grid(batch, **grid_kwargs)`` as an image file (PNG by its suffix).

    ``upscale`` repeats each pixel (nearest neighbour) so tiny images stay visible.
    """
    img = to_uint8(make_grid(batch, **grid_kwargs))
    if upscale > 1:
        img = img.repeat(upscale, axis=0).repeat(upscale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def load_image(path, max_side=None):
    """An image file as a (3, H, W) float32 array in [0, 1] (optionally downscaled)."""
    with Image.open(path) as src:
        img = src.convert("RGB")
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.size[0] * scale)),
                          max(1, round(img.size[1] * scale))), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0


def svg_line_chart(series, title, width=480, height=260, xlabel="epoch"):
    """An inline SVG line chart; ``series`` maps a name to a list of (x, y)."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    points = [p for pts in series.values() for p in pts if np.isfinite(p[1])]
    left, right, top, bottom = 52, 12, 28, 36
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="{html.escape(title)}">',
           f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">'
           f'{html.escape(title)}</text>']
    if points:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

        def px(v):
            return left + (v - x0) / (x1 - x0) * (width - left - right)

        def py(v):
            return height - bottom - (v - y0) / (y1 - y0) * (height - top - bottom)

        out.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" '
                   f'height="{height - top - bottom}" fill="none" stroke="#999"/>')
        for v in (y0, (y0 + y1) / 2, y1):
            out.append(f'<text x="{left - 4}" y="{py(v) + 4:.1f}" text-anchor="end" '
                       f'font-size="10">{v:.3g}</text>')
        for v in (x0, x1):
            out.append(f'<text x="{px(v):.1f}" y="{height - bottom + 14}" '
                       f'text-anchor="middle" font-size="10">{v:g}</text>')
        out.append(f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle" '
                   f'font-size="11">{html.escape(xlabel)}</text>')
        for k, (name, pts) in enumerate(series.items()):
            pts = [p for p in pts if np.isfinite(p[1])]
            if not pts:
                continue
            color = colors[k % len(colors)]
            path = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in pts)
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                       f'points="{path}"/>')
            out.append(f'<text x="{left + 8}" y="{top + 14 + 13 * k}" font-size="11" '
                       f'fill="{color}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
img{{image-rendering:pixelated;max-width:100%;border:1px solid #ccc}}
figure{{display:inline-block;margin:0 1em 1em 0;vertical-align:top}}
code,pre{{background:#f4f4f4}}</style></head><body>
{body}
</body></html>
"""


def html_page(title, body):
    return _PAGE.format(title=html.escape(title), body=body)


class LogWriter:
    """A SummaryWriter look-alike writing PNGs, scalars.json and index.html.

    ``with LogWriter("runs/look") as w: w.add_images("conv/out", y, 0)``.
    """

    def __init__(self, log_dir="runs/log", tensorboard=True):
        self.log_dir = Path(log_dir)
        (self.log_dir / "images").mkdir(parents=True, exist_ok=True)
        self.scalars, self.images = {}, []
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(self.log_dir))

    def add_scalar(self, tag, value, global_step=0):
        self.scalars.setdefault(tag, []).append((int(global_step), float(value)))
        if self._tb is not None:
            self._tb.add_scalar(tag, float(value), global_step)
        self._write_index()

    def add_images(self, tag, batch, global_step=0, **grid_kwargs):
        """A batch (N, C, H, W) of any value range, shown as one grid."""
        name = f"{tag.replace('/', '_')}_{int(global_step)}.png"
        grid = make_grid(batch, **grid_kwargs)
        upscale = max(1, 96 // max(grid.shape[1:]))
        save_images(self.log_dir / "images" / name, batch, upscale=upscale, **grid_kwargs)
        self.images.append((tag, int(global_step), f"images/{name}", tuple(np.shape(batch))))
        if self._tb is not None:
            self._tb.add_image(tag, grid, global_step, dataformats="CHW")
        self._write_index()

    def add_image(self, tag, image, global_step=0, **grid_kwargs):
        """One image (C, H, W) or (H, W)."""
        image = np.asarray(image)
        self.add_images(tag, image[None] if image.ndim == 3 else image[None, None],
                        global_step, **grid_kwargs)

    def _write_index(self):
        parts = [f"<h1>nnzero log: {html.escape(str(self.log_dir))}</h1>"]
        for tag, pts in self.scalars.items():
            parts.append(svg_line_chart({tag: pts}, tag, xlabel="step"))
        for tag, step, rel, shape in self.images:
            parts.append(f'<figure><img src="{html.escape(rel)}" alt="{html.escape(tag)}">'
                         f"<figcaption>{html.escape(tag)} (step {step}, shape {shape})"
                         f"</figcaption></figure>")
        (self.log_dir / "index.html").write_text(html_page("nnzero log", "\n".join(parts)))
        (self.log_dir / "scalars.json").write_text(json.dumps(self.scalars))

    def close(self):
        self._write_index()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
