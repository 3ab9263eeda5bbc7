"""Grids, the log writer, the show gallery and the training report."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnzero.cli import main
from nnzero.gallery import size_formula
from nnzero.layers import Conv2d, ConvTranspose2d, MaxPool2d
from nnzero.viz import LogWriter, make_grid, save_images, svg_line_chart


def test_grid_pixels_and_size():
    batch = np.stack([np.full((1, 2, 3), v) for v in (0.0, 1.0, 2.0)])  # 3 grey images
    grid = make_grid(batch, nrow=2, padding=1, pad_value=0.5)
    assert grid.shape == (1, 2 * (2 + 1) + 1, 2 * (3 + 1) + 1)
    assert grid[0, 0, 0] == 0.5                       # padding
    np.testing.assert_array_equal(grid[0, 1:3, 1:4], 0.0)   # image 0 -> min
    np.testing.assert_array_equal(grid[0, 1:3, 5:8], 0.5)   # image 1 -> middle
    np.testing.assert_array_equal(grid[0, 4:6, 1:4], 1.0)   # image 2 -> max (second row)
    each = make_grid(batch + np.arange(6).reshape(1, 1, 2, 3), scale_each=True, padding=0)
    assert each.min() == 0 and each.max() == 1
    raw = make_grid(np.full((1, 3, 2, 2), 7.0), normalize=False, padding=0)
    np.testing.assert_array_equal(raw, 1.0)           # clipped to [0, 1]


def test_feature_map_grid_has_a_tile_per_channel():
    x = np.arange(2 * 5 * 2 * 2, dtype=float).reshape(2, 5, 2, 2)
    grid = make_grid(x, padding=0)
    assert grid.shape == (1, 2 * 2, 5 * 2)            # a row per sample, a tile per channel
    np.testing.assert_allclose(grid[0, 2:4, 0:2], (x[1, 0] - x.min()) / (x.max() - x.min()))
    with pytest.raises(ValueError, match="make_grid: expected"):
        make_grid(np.zeros((1, 1, 1, 1, 1)))


def test_save_images_writes_a_png(tmp_path):
    path = save_images(tmp_path / "a.png", np.random.default_rng(0).random((4, 3, 5, 5)),
                       nrow=2, padding=1, upscale=3)
    with Image.open(path) as img:
        assert img.size == (3 * (2 * 6 + 1), 3 * (2 * 6 + 1)) and img.mode == "RGB"


def _referenced_files(page):
    text = page.read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text
    return re.findall(r'src="([^"]+)"', text)


def test_log_writer_files_exist(tmp_path):
    with LogWriter(tmp_path / "log", tensorboard=False) as w:
        for step in range(3):
            w.add_scalar("loss", 1.0 / (step + 1), step)
        w.add_images("conv/out", np.random.default_rng(0).random((2, 6, 4, 4)), 0)
        w.add_image("photo", np.random.default_rng(1).random((3, 8, 8)), 1)
    page = tmp_path / "log" / "index.html"
    refs = _referenced_files(page)
    assert len(refs) == 2 and all((page.parent / r).is_file() for r in refs)
    assert "<svg" in page.read_text() and "loss" in page.read_text()


def test_tensorboard_events_when_installed(tmp_path):
    pytest.importorskip("tensorboardX")
    with LogWriter(tmp_path / "tb") as w:
        w.add_scalar("x", 1.0, 0)
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


def test_svg_chart_has_a_line_per_series():
    svg = svg_line_chart({"a": [(1, 0.5), (2, 0.25)], "b": [(1, 1.0), (2, float("nan"))]}, "t")
    assert svg.count("<polyline") == 2 and svg.startswith("<svg")


def test_size_formulas_give_the_real_output_size():
    x = (1, 3, 427, 640)
    assert size_formula(Conv2d(3, 6, 3, 1, 0), x).splitlines()[0].endswith("= 425")
    assert size_formula(MaxPool2d(2, ceil_mode=True), (1, 3, 5, 5)).splitlines()[0].endswith(
        "= 3")
    assert size_formula(MaxPool2d(2), (1, 3, 5, 5)).splitlines()[0].endswith("= 2")
    assert size_formula(ConvTranspose2d(3, 3, 4, 2, 1), (1, 3, 8, 8)).endswith("= 16")


def test_show_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "show"
    assert main(["show", "--out", str(out), "--size", "24", "--experiments", "conv",
                 "maxpool_ceil", "act_sigmoid", "equalize", "conv_digits"]) == 0
    page = out / "index.html"
    assert str(page) in capsys.readouterr().out
    refs = _referenced_files(page)
    assert len(refs) == 10 and all((out / r).is_file() for r in refs)
    text = page.read_text()
    assert "Conv2d(3, 6, kernel_size=(3, 3), stride=(1, 1))" in text
    assert "ceil((" in text and "&rarr;" in text
    with pytest.raises(ValueError, match="unknown experiments"):
        main(["show", "--out", str(out), "--experiments", "nope"])


def test_show_default_covers_every_experiment(tmp_path):
    assert main(["show", "--out", str(tmp_path), "--size", "16"]) == 0
    names = {Path(r).stem.rsplit("_", 1)[0] for r in _referenced_files(tmp_path / "index.html")}
    expected = {"conv", "conv_transpose", "maxpool", "maxpool_ceil", "maxpool_overlap",
                "avgpool", "stochpool", "mixedpool", "minmax", "zscore", "equalize",
                "act_sigmoid", "act_relu", "act_swish", "act_prelu", "act_rrelu"}
    assert expected <= names


def test_train_writes_report_with_curves(tmp_path):
    assert main(["train", "--epochs", "2", "--quiet", "--out", str(tmp_path)]) == 0
    page = tmp_path / "digits-cnn-seed0" / "report.html"
    text = page.read_text()
    assert text.count("<svg") == 2 and "generalization gap" in text
    for ref in _referenced_files(page):
        assert (page.parent / ref).is_file()


def test_matplotlib_curves_when_installed(tmp_path):
    pytest.importorskip("matplotlib")
    assert main(["train", "--epochs", "1", "--quiet", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "digits-cnn-seed0" / "curves.png").is_file()
