"""Labelled previews: the image beside colour-mapped maps, each panel with a title, and each map with a colour bar
in its units. What depthfm-predict, depthfm-demo and depthfm-replay write as ``*_preview.png``.

A map that has nothing to show (the uncertainty of an ensemble of 1 is zero everywhere) says so in its panel
instead of showing a black square.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .processing import colorize

FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKGROUND = 255  # white around panels, titles and bar labels
INK = (0, 0, 0)
GAP_PX = 6


@dataclass(frozen=True)
class Panel:
    """One panel: an RGB image (``values_hw`` None) or a map colour-mapped over [``vmin``, ``vmax``] (the 2nd/98th
    percentiles when None) with a colour bar labelled in ``unit``. ``note`` replaces the map by a sentence."""

    title: str
    rgb_hwc_u8: np.ndarray | None = None
    values_hw: np.ndarray | None = None
    unit: str = ""
    vmin: float | None = None
    vmax: float | None = None
    note: str = ""


def _scale(height: int) -> float:
    """Font scale for a panel of ``height`` pixels: readable from 64 to 2000 px."""
    return float(np.clip(height / 420.0, 0.35, 1.4))


def _text_block(lines: list[str], width: int, scale: float) -> np.ndarray:
    """White strip of ``width`` px with ``lines`` of black text, each shrunk to fit the width."""
    thickness = 1
    (_, h), base = cv2.getTextSize("Ayg([|", FONT, scale, thickness)  # one line height for every text
    rows = []
    for line in lines:
        s = scale
        w = cv2.getTextSize(line, FONT, s, thickness)[0][0]
        if w > width - 4:
            s *= (width - 4) / w
        row = np.full((h + base + 6, width, 3), BACKGROUND, np.uint8)
        cv2.putText(row, line, (2, h + 3), FONT, s, INK, thickness, cv2.LINE_AA)
        rows.append(row)
    return np.concatenate(rows, axis=0)


def _note_image(note: str, height: int, width: int, scale: float) -> np.ndarray:
    """Grey panel with ``note`` (wrapped at ' : ' and spaces) in the middle."""
    out = np.full((height, width, 3), 200, np.uint8)
    words, lines = note.split(" "), [""]
    for word in words:
        trial = (lines[-1] + " " + word).strip()
        if cv2.getTextSize(trial, FONT, scale, 1)[0][0] > width - 8 and lines[-1]:
            lines.append(word)
        else:
            lines[-1] = trial
    block = _text_block(lines, width, scale)
    block[np.all(block == BACKGROUND, axis=-1)] = 200
    top = max(0, (height - block.shape[0]) // 2)
    out[top:top + block.shape[0]] = block[:height - top]
    return out


def _colour_bar(height: int, vmin: float, vmax: float, unit: str, scale: float,
                colormap: int = cv2.COLORMAP_MAGMA) -> np.ndarray:
    """A vertical colour bar (``vmax`` at the top) with its limits, midpoint and unit written beside it."""
    bar_w = max(8, height // 16)
    ramp = np.linspace(vmax, vmin, height)[:, None].repeat(bar_w, axis=1)
    bar = colorize(ramp, vmin, vmax, colormap)
    labels = [f"{v:.3g}" for v in (vmax, (vmin + vmax) / 2, vmin)]
    text_scale = 0.85 * scale
    label_w = max(cv2.getTextSize(t, FONT, text_scale, 1)[0][0] for t in [*labels, unit]) + 6
    side = np.full((height, label_w, 3), BACKGROUND, np.uint8)
    text_h = cv2.getTextSize("0", FONT, text_scale, 1)[0][1]
    for text, y in zip(labels, (text_h + 2, height // 2 + text_h // 2, height - 3)):
        cv2.putText(side, text, (3, y), FONT, text_scale, INK, 1, cv2.LINE_AA)
    if unit and height > 6 * text_h:
        cv2.putText(side, unit, (3, height // 4 + text_h // 2), FONT, text_scale, INK, 1, cv2.LINE_AA)
    return np.concatenate([np.full((height, 3, 3), BACKGROUND, np.uint8), bar, side], axis=1)


def render_panel(panel: Panel, height: int, scale: float) -> np.ndarray:
    """The panel as RGB: its title above its content (scaled to ``height`` px), a map's colour bar to the right."""
    if panel.rgb_hwc_u8 is not None:
        content = panel.rgb_hwc_u8
    elif panel.values_hw is not None and not panel.note:
        finite = panel.values_hw[np.isfinite(panel.values_hw)]
        lo = panel.vmin if panel.vmin is not None else float(np.percentile(finite, 2)) if finite.size else 0.0
        hi = panel.vmax if panel.vmax is not None else float(np.percentile(finite, 98)) if finite.size else 1.0
        hi = hi if hi > lo else lo + 1e-6
        content = colorize(panel.values_hw, lo, hi)
    else:
        content = None
    shape = (panel.rgb_hwc_u8 if panel.rgb_hwc_u8 is not None else panel.values_hw).shape
    width = max(1, int(round(shape[1] * height / shape[0])))
    if content is None:
        body = _note_image(panel.note or "nothing to show", height, width, scale)
    else:
        interpolation = cv2.INTER_AREA if height < shape[0] else cv2.INTER_NEAREST
        body = cv2.resize(content, (width, height), interpolation=interpolation) if shape[0] != height else content
        if panel.values_hw is not None:
            body = np.concatenate([body, _colour_bar(height, lo, hi, panel.unit, scale)], axis=1)
    title = _text_block([panel.title], body.shape[1], scale)
    return np.concatenate([title, body], axis=0)


def compose(rows: list[list[Panel]], height: int | None = None) -> np.ndarray:
    """Panels side by side, row after row, on white; every panel's content ``height`` px tall (default: the first
    panel's own height, at least 128 px so that the labels stay readable)."""
    first = rows[0][0]
    own = (first.rgb_hwc_u8 if first.rgb_hwc_u8 is not None else first.values_hw).shape[0]
    height = height or max(own, 128)
    scale = _scale(height)
    rendered = []
    for row in rows:
        tiles = [render_panel(p, height, scale) for p in row]
        tall = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((0, tall - t.shape[0]), (0, GAP_PX), (0, 0)), constant_values=BACKGROUND) for t in tiles]
        rendered.append(np.concatenate(tiles, axis=1))
    wide = max(r.shape[1] for r in rendered)
    rendered = [np.pad(r, ((0, GAP_PX), (0, wide - r.shape[1]), (0, 0)), constant_values=BACKGROUND)
                for r in rendered]
    return np.concatenate(rendered, axis=0)


def uncertainty_panel(std_z_hw: np.ndarray, ensemble_size: int, title: str = "uncertainty: ensemble std of z",
                      unit: str = "z") -> Panel:
    """The uncertainty map, or a panel saying why there is none (an ensemble of 1, or members that agree)."""
    note = ""
    if ensemble_size <= 1:
        note = "ensemble 1: no uncertainty (use an ensemble of 2 or more)"
    elif not np.nanmax(np.abs(std_z_hw), initial=0.0) > 0:
        note = f"ensemble {ensemble_size}: the members agree everywhere (no noise augmentation?)"
    return Panel(title, values_hw=std_z_hw, unit=unit, vmin=0.0, note=note)


def relative_preview(rgb_hwc_u8: np.ndarray, relative_depth_hw: np.ndarray, std_z_hw: np.ndarray,
                     ensemble_size: int) -> np.ndarray:
    """image | relative depth (0 near, 1 far) | uncertainty (ensemble std of z, in z units), labelled."""
    return compose([[Panel("image", rgb_hwc_u8=rgb_hwc_u8),
                     Panel("relative depth (0 near, 1 far)", values_hw=relative_depth_hw, vmin=0.0,
                           vmax=1.0),
                     uncertainty_panel(std_z_hw, ensemble_size)]])


def write_png(path, rgb_hwc_u8: np.ndarray) -> None:
    """Write an RGB image as PNG (OpenCV wants BGR)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb_hwc_u8, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
