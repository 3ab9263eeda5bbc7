"""``python -m nnzero show``: every layer of the notes acting on real images.

Each experiment takes the photos (and the digits) in ``data/``, runs one layer
or transform, and writes its input and output grids; ``index.html`` shows
them with the experiment's title, the layer's repr, the shapes and the size
formula that produced the output shape.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from . import layers as L
from .datasets import find_data_dir, load_digits
from .transforms import Standardize, equalize_hist, minmax_scale
from .viz import html_page, load_image, save_images

ACTIVATIONS = ["Sigmoid", "Tanh", "ReLU", "Softplus", "LeakyReLU", "PReLU", "RReLU", "ELU",
               "Swish", "GELU", "SELU", "SiLU", "Mish", "Hardswish"]


def _dim_formula(kind, layer, size, axis):
    k, s = layer.kernel_size[axis], layer.stride[axis]
    p = layer.padding[axis] if not isinstance(layer.padding, str) else 0
    d = getattr(layer, "dilation", (1, 1))[axis]
    name = "H" if axis == 0 else "W"
    if kind == "convT":
        op = layer.output_padding[axis]
        out = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        return (f"{name}_out = ({name} - 1)*S - 2P + D*(K - 1) + OP + 1 = ({size} - 1)*{s} - "
                f"2*{p} + {d}*({k} - 1) + {op} + 1 = {out}")
    ceil = getattr(layer, "ceil_mode", False)
    num = size + 2 * p - d * (k - 1) - 1
    rounding = "ceil" if ceil else "floor"
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return (f"{name}_out = {rounding}(({name} + 2P - D*(K - 1) - 1) / S) + 1 = {rounding}(("
            f"{size} + 2*{p} - {d}*({k} - 1) - 1) / {s}) + 1 = {out}")


def size_formula(layer, shape):
    """The output-size formula with this input's numbers filled in (or a note)."""
    if isinstance(layer, L.Conv2d) and layer.padding == "same":
        return "padding='same': H_out = H, W_out = W"
    kind = {L.Conv2d: "conv", L.ConvTranspose2d: "convT"}.get(type(layer), "pool")
    if not hasattr(layer, "kernel_size"):
        return "element-wise: the output has the input's shape"
    return "\n".join(_dim_formula(kind, layer, shape[2 + a], a) for a in (0, 1))


def _sobel_conv(in_channels):
    """Conv2d whose two filters are the Sobel edge detectors (on the channel mean)."""
    conv = L.Conv2d(in_channels, 2, 3, padding=1, bias=False)
    gx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
    conv.weight.data[0] = gx / in_channels
    conv.weight.data[1] = gx.T / in_channels
    return conv


def _bilinear_up(channels):
    """ConvTranspose2d(k=4, s=2, p=1) with the bilinear kernel: 2x upsampling."""
    up = L.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, groups=channels,
                           bias=False)
    f = np.array([0.25, 0.75, 0.75, 0.25], dtype=np.float32)
    up.weight.data[:, 0] = np.outer(f, f)
    return up


def experiments(photos, digits, rng):
    """(name, title, layer-or-None, input batch, function) for each experiment."""
    z = Standardize().fit(photos).transform(photos) * 2  # values spread over about [-4, 4]
    out = []
    for name in ACTIVATIONS:
        layer = getattr(L, name)(**({"rng": rng} if name == "RReLU" else {}))
        out.append((f"act_{name.lower()}", f"{name} on z-scored photos (x2)", layer, z, None))
    out += [
        ("channel_maxout", "ChannelMaxout(3): the max over R, G, B (maxout across maps)",
         L.ChannelMaxout(3), photos, None),
        ("conv", "Conv2d(3, 6, 3, 1, 0), random (PyTorch-style) initialisation: six "
         "feature maps per photo", L.Conv2d(3, 6, 3, 1, 0, rng=rng), photos, None),
        ("conv_sobel", "Conv2d with Sobel filters: horizontal and vertical edges",
         _sobel_conv(3), photos, None),
        ("conv_digits", "Conv2d(1, 2, 3, padding=1) with Sobel filters on the digits",
         _sobel_conv(1), digits, None),
        ("conv_transpose", "ConvTranspose2d(3, 3, 4, stride=2, padding=1, groups=3), "
         "bilinear kernel: 2x upsampling", _bilinear_up(3), photos[:, :, ::2, ::2], None),
        ("maxpool", "MaxPool2d(2): non-overlapping windows", L.MaxPool2d(2), photos, None),
        ("maxpool_ceil", "MaxPool2d(2, ceil_mode=True) on an odd-sized image: the last "
         "window hangs over the edge", L.MaxPool2d(2, ceil_mode=True), photos[:, :, 1:, 1:],
         None),
        ("maxpool_overlap", "MaxPool2d(3, stride=2): overlapping windows (AlexNet)",
         L.MaxPool2d(3, stride=2), photos, None),
        ("maxpool_digits", "MaxPool2d(2) on the digits: 8x8 -> 4x4", L.MaxPool2d(2),
         digits, None),
        ("avgpool", "AvgPool2d(4): average of 4x4 windows", L.AvgPool2d(4), photos, None),
        ("stochpool", "StochasticPool2d(4), training: each window draws a cell with "
         "probability a_i / sum(a)", L.StochasticPool2d(4, rng=rng), photos, None),
        ("stochpool_eval", "StochasticPool2d(4), eval: sum(a^2) / sum(a)",
         L.StochasticPool2d(4).eval(), photos, None),
        ("mixedpool", "MixedPool2d(4, mode='learned'): a = sigmoid(0) = 1/2 of max plus "
         "1/2 of average", L.MixedPool2d(4, mode="learned"), photos, None),
        ("minmax", "min-max scaling of each photo to [0, 1]", None, photos * 0.5 + 0.2,
         lambda x: minmax_scale(x, axis=(1, 2, 3))),
        ("zscore", "z-score standardisation per channel (shown min-max scaled)", None, photos,
         lambda x: Standardize().fit(x).transform(x)),
        ("equalize", "histogram equalisation (Pillow's rule) of each 8-bit channel", None,
         photos, _equalize_batch),
    ]
    return out


def _equalize_batch(x):
    u8 = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.stack([equalize_hist(img) for img in u8]).transpose(0, 3, 1, 2) / 255.0


def run(out_dir="runs/show", images=None, names=None, max_side=128, seed=0):
    """Run the experiments; returns the path of the gallery page."""
    rng = np.random.default_rng(seed)
    if images is None:
        folder = find_data_dir("flower.jpg")
        images = [folder / "flower.jpg", folder / "china.jpg"]
    photos = [load_image(p, max_side) for p in images]
    h = min(p.shape[1] for p in photos)
    w = min(p.shape[2] for p in photos)
    photos = np.stack([p[:, :h, :w] for p in photos])
    digits = load_digits()[0][:16]
    chosen = experiments(photos, digits, rng)
    known = [e[0] for e in chosen]
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"show: unknown experiments {unknown}; choose from {known}")
        chosen = [e for e in chosen if e[0] in names]
    out_dir = Path(out_dir)
    parts = ["<h1>nnzero show: what each layer does to an image</h1>",
             f"<p>Inputs: {', '.join(html.escape(str(p)) for p in images)} (scaled to at "
             f"most {max_side} px) and 16 digits. Each grid is min-max scaled for display; "
             f"feature maps (C not 1 or 3) show one grey tile per channel.</p>"]
    for name, title, layer, x, fn in chosen:
        y = layer(x) if layer is not None else fn(x)
        up = max(1, 128 // x.shape[-1])
        save_images(out_dir / f"{name}_in.png", x, upscale=up, nrow=8)
        save_images(out_dir / f"{name}_out.png", y, upscale=max(1, up * x.shape[-1]
                                                                // max(1, y.shape[-1])),
                    nrow=8, scale_each=True)
        what = repr(layer) if layer is not None else title
        formula = size_formula(layer, x.shape) if layer is not None else \
            "a transform: the output has the input's shape"
        parts.append(
            f'<section id="{name}"><h2>{html.escape(title)}</h2>'
            f"<pre>{html.escape(what)}</pre>"
            f"<p>input {tuple(x.shape)} &rarr; output {tuple(y.shape)}</p>"
            f"<pre>{html.escape(formula)}</pre>"
            f'<figure><img src="{name}_in.png" alt="input"><figcaption>input</figcaption>'
            f'</figure><figure><img src="{name}_out.png" alt="output"><figcaption>output'
            f"</figcaption></figure></section>")
    page = out_dir / "index.html"
    page.write_text(html_page("nnzero show", "\n".join(parts)))
    return page, len(chosen)
