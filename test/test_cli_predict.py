import cv2
import numpy as np

from depthfm_ros.cli.predict import main


def test_predict_writes_depth_png_npz_and_preview(tmp_path, official_tiny):
    out = tmp_path / "out"
    rc = main([str(official_tiny / "image.png"), "--checkpoint", str(official_tiny / "tiny.ckpt"),
               "--vae", str(official_tiny / "vae"), "--steps", "2", "--ensemble", "1",
               "--processing-resolution", "0", "-o", str(out)])
    assert rc == 0
    png = cv2.imread(str(out / "image_depth.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (128, 192)
    ref = np.load(official_tiny / "ref_depth_s2.npy")
    assert np.abs(png / 65535.0 - ref).max() < 1e-4
    npz = np.load(out / "image_depth.npz")
    assert set(npz.files) == {"z", "depth", "uncertainty"}
    assert np.abs(npz["depth"] - ref).max() < 1e-5
    preview = cv2.imread(str(out / "image_preview.png"))
    image = cv2.imread(str(official_tiny / "image.png"))
    assert preview.shape[0] > 128 and preview.shape[1] > 3 * 192  # titles above, colour bars beside
    assert any(np.array_equal(preview[top:top + 128, :192], image) for top in range(preview.shape[0] - 127))


def test_unreadable_image_is_reported_and_others_still_written(tmp_path, official_tiny):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    rc = main([str(bad), str(official_tiny / "image.png"), "--tiny-model", "--steps", "1", "--ensemble", "2",
               "--processing-resolution", "64", "-o", str(tmp_path / "o"), "--format", "npy"])
    assert rc == 1
    assert (tmp_path / "o" / "image_depth.npz").exists()
    assert not (tmp_path / "o" / "broken_depth.npz").exists()


def test_missing_checkpoint_gives_a_clear_error(tmp_path, capsys):
    rc = main([str(tmp_path / "x.png"), "--checkpoint", str(tmp_path / "none.ckpt"), "--vae", str(tmp_path),
               "-o", str(tmp_path / "out")])
    assert rc == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_no_model_names_the_flags_to_give(tmp_path, capsys):
    assert main([str(tmp_path / "x.png"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no model given" in err and "--checkpoint" in err and "--tiny-model" in err and "--engine" in err
    assert not (tmp_path / "out").exists()  # nothing written for a run that never started
