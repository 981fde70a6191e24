import numpy as np
import pytest

from depthfm_ros.errors import InputError
from depthfm_ros.processing import (
    check_rgb,
    colorize,
    ensemble_stats,
    normalize_log_depth,
    processing_size,
    relative_depth,
    resize_hw,
    to_model_input,
)


@pytest.mark.parametrize("hw,res,expected", [
    ((480, 640), 512, (384, 512)),
    ((640, 480), 512, (512, 384)),     # portrait
    ((720, 1280), 512, (320, 512)),    # 288 -> 320 (aspect 1.6), not 256 (2.0; banker's rounding of 4.5 gave it)
    ((1280, 720), 512, (512, 320)),
    ((1080, 1920), 512, (320, 512)),
    ((1920, 1080), 640, (640, 384)),   # 360 -> 384 (1.67) rather than 320 (2.0)
    ((720, 1280), 0, (704, 1280)),     # input size: 704 (1.82) rather than 768 (1.67)
    ((128, 192), 0, (128, 192)),
    ((100, 1000), 512, (64, 512)),     # never below 64
    ((97, 131), 0, (128, 128)),        # 1.0 is nearer 1.35 than 2.0 is
    ((97, 160), 0, (128, 192)),        # 2.5 multiples of 64 round up
])
def test_processing_size(hw, res, expected):
    assert processing_size(*hw, res) == expected


def test_processing_size_keeps_the_aspect_ratio_as_closely_as_multiples_of_64_allow():
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(48, 4000, 2))
        res = int(rng.choice([0, 256, 512, 640, 1024]))
        ph, pw = processing_size(h, w, res)
        assert ph % 64 == 0 and pw % 64 == 0 and min(ph, pw) >= 64
        assert max(ph, pw) == (res or max(64, int(np.floor(max(h, w) / 64 + 0.5)) * 64))
        assert (ph >= pw) == (h >= w) or ph == pw
        error = abs(np.log((ph / pw) / (h / w)))
        long_out = max(ph, pw)
        for short in range(64, long_out + 1, 64):  # no other multiple of 64 keeps the aspect better
            other = (long_out, short) if h >= w else (short, long_out)
            assert error <= abs(np.log((other[0] / other[1]) / (h / w))) + 1e-12, (h, w, res, ph, pw, other)


@pytest.mark.parametrize("res", [-64, 100, 33])
def test_processing_size_rejects_bad_resolution(res):
    with pytest.raises(InputError, match="multiple of 64"):
        processing_size(480, 640, res)


@pytest.mark.parametrize("bad,msg", [
    (np.zeros((4, 4, 3), np.float32), "uint8"),
    (np.zeros((4, 4), np.uint8), "HxWx3"),
    (np.zeros((4, 4, 4), np.uint8), "HxWx3"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
    ([[1, 2, 3]], "numpy"),
])
def test_check_rgb_errors(bad, msg):
    with pytest.raises(InputError, match=msg):
        check_rgb(bad)


def test_model_input_scaling_and_layout():
    rgb = np.zeros((64, 128, 3), np.uint8)
    rgb[..., 0] = 255
    x = to_model_input(rgb, 64, 128)
    assert x.shape == (3, 64, 128) and x.dtype == np.float32
    assert x[0].min() == 1.0 and x[1].max() == -1.0


def test_resize_hw_identity_and_shape():
    a = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    assert resize_hw(a, 30, 40) is a
    b = resize_hw(a, 60, 80)
    assert b.shape == (60, 80)
    assert abs(b.mean() - a.mean()) < 0.01


def test_relative_depth_is_min_max_of_exp():
    z = np.array([[[0.0, np.log(2.0)], [np.log(3.0), np.log(5.0)]]])
    np.testing.assert_allclose(relative_depth(z)[0], [[0, 0.25], [0.5, 1.0]], atol=1e-6)


def test_ensemble_stats():
    members = np.stack([np.full((1, 2, 2), v) for v in (1.0, 2.0, 3.0, 4.0)], axis=1)
    mean, std = ensemble_stats(members)
    np.testing.assert_allclose(mean, 2.5)
    np.testing.assert_allclose(std, np.std([1, 2, 3, 4]))


def test_colorize_nan_is_black_and_range_spans():
    v = np.linspace(0, 1, 100).reshape(10, 10)
    v[0, 0] = np.nan
    rgb = colorize(v, 0, 1)
    assert rgb.shape == (10, 10, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[-1, -1].sum() > rgb[0, 1].sum()


def test_read_rgb_returns_rgb_order_and_rejects_non_images(tmp_path):
    import cv2

    from depthfm_ros.processing import read_rgb

    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = read_rgb(tmp_path / "red.png")
    assert rgb.shape == (4, 6, 3) and rgb[0, 0].tolist() == [200, 0, 0]
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="cannot read image"):
        read_rgb(tmp_path / "text.png")
    with pytest.raises(InputError):
        read_rgb(tmp_path / "missing.png")


def test_normalisation_maps_percentiles_to_plus_minus_one():
    depth = np.exp(np.random.default_rng(0).uniform(0, 3, (50, 40)))
    norm, lo, hi = normalize_log_depth(depth, low_pct=2, high_pct=98)
    log_d = np.log(depth)
    assert lo == pytest.approx(np.percentile(log_d, 2)) and hi == pytest.approx(np.percentile(log_d, 98))
    # the pixel nearest each percentile maps to about -1 / +1, everything is clipped into [-1, 1]
    assert norm[np.unravel_index(np.argmin(np.abs(log_d - lo)), log_d.shape)] == pytest.approx(-1, abs=1e-3)
    assert norm[np.unravel_index(np.argmin(np.abs(log_d - hi)), log_d.shape)] == pytest.approx(1, abs=1e-3)
    assert norm.min() == -1 and norm.max() == 1
    assert np.mean(norm == -1) == pytest.approx(0.02, abs=0.005)
    # the inverse recovers log depth inside the percentile range
    inside = (log_d > lo) & (log_d < hi)
    np.testing.assert_allclose(lo + (norm[inside] + 1) / 2 * (hi - lo), log_d[inside], rtol=1e-5)


def test_normalisation_invalid_pixels_and_errors():
    depth = np.full((8, 8), 2.0)
    depth[0, :4] = [np.nan, 0.0, -1.0, np.inf]
    depth[4:] = 5.0
    norm, _, _ = normalize_log_depth(depth, fill_invalid=1.0)
    assert np.all(norm[0, :4] == 1.0) and np.isfinite(norm).all()
    with pytest.raises(InputError):
        normalize_log_depth(np.zeros((4, 4)))
    with pytest.raises(InputError):
        normalize_log_depth(depth, low_pct=50, high_pct=10)
