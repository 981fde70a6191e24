"""Previews carry titles and colour bars in their units; a map with nothing to show says why."""

import cv2
import numpy as np

from depthfm_ros.previews import Panel, compose, relative_preview, render_panel, uncertainty_panel
from depthfm_ros.processing import colorize

H, W = 96, 128


def scene():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = np.tile(np.linspace(0.0, 1.0, W, dtype=np.float32), (H, 1))
    return rgb, depth


def content_top(preview: np.ndarray, rgb: np.ndarray, height: int) -> int:
    """Row where the (resized) input image starts: below its title strip."""
    image = cv2.resize(rgb, (round(W * height / H), height), interpolation=cv2.INTER_NEAREST)
    return next(top for top in range(preview.shape[0] - height + 1)
                if np.array_equal(preview[top:top + height, :image.shape[1]], image))


def test_the_preview_has_a_title_strip_above_every_panel_and_a_colour_bar_per_map():
    rgb, depth = scene()
    preview = relative_preview(rgb, depth, 0.05 * depth, ensemble_size=4)
    height = 128  # small inputs are shown at 128 px so that the labels stay readable
    top = content_top(preview, rgb, height)
    assert top >= 8
    title = preview[:top]
    assert (title < 128).any(axis=-1).sum() > 50  # dark text on white
    # depth panel: the map, then its colour bar: the colour map from 1 (top) to 0 (bottom), then its labels
    width = round(W * height / H)
    row = preview[top + height // 2]
    left = next(x for x in range(width + 1, preview.shape[1]) if (row[x] != 255).any())  # after the white gap
    map_rgb = cv2.resize(colorize(depth, 0.0, 1.0), (width, height), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(preview[top:top + height, left:left + width], map_rgb)
    bar = preview[top:top + height, left + width + 3 + 1]  # after the bar's 3 px margin
    ramp = colorize(np.linspace(1.0, 0.0, height)[:, None], 0.0, 1.0)[:, 0]
    assert np.abs(bar.astype(int) - ramp.astype(int)).max() <= 1


def test_ensemble_of_one_says_it_has_no_uncertainty_instead_of_a_black_panel():
    _, depth = scene()
    panel = render_panel(uncertainty_panel(np.zeros_like(depth), 1), 128, 0.4)
    body = panel[-128:]
    assert (body.max(axis=-1) == 0).mean() < 0.02  # not a black square
    assert ((body == 200).all(axis=-1)).mean() > 0.7  # a grey panel with a sentence on it
    assert "ensemble 1: no uncertainty" in uncertainty_panel(np.zeros_like(depth), 1).note
    assert "agree" in uncertainty_panel(np.zeros_like(depth), 4).note  # M > 1 but no spread: says so too
    assert uncertainty_panel(0.1 * depth, 4).note == ""


def test_metric_rows_and_all_nan_maps_compose():
    rgb, depth = scene()
    nan = np.full((H, W), np.nan, np.float32)
    image = compose([[Panel("image", rgb_hwc_u8=rgb), Panel("depth [m]", values_hw=1 + 9 * depth, unit="m")],
                     [Panel("uncertainty [m]", values_hw=nan, unit="m", vmin=0.0),
                      Panel("completed depth [m]", values_hw=nan, unit="m", note="no completed depth")]])
    assert image.dtype == np.uint8 and image.shape[0] > 2 * 128 and image.shape[2] == 3
