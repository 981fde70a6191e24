"""Every tool that writes checks its output folder first: an unwritable one gives one line naming the flag and exit
code 2 before any model loads (a missing checkpoint would be the error otherwise) and before any inference."""

import importlib
import os
from pathlib import Path

import pytest

from depthfm_ros.errors import InputError
from depthfm_ros.files import writable_file, writable_folder

UNWRITABLE_SYSTEM_FOLDER = Path("/sys")  # refuses new files even to root


def _system_folder_is_unwritable() -> bool:
    try:
        writable_folder(UNWRITABLE_SYSTEM_FOLDER, "--output")
    except InputError:
        return True
    return False


def bad_folders(tmp_path: Path) -> dict[str, Path]:
    """Output folders no tool can write: below a file, and (on Linux) below /sys."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = {"below a file": blocker / "sub" / "out"}
    if _system_folder_is_unwritable():
        out["read-only"] = UNWRITABLE_SYSTEM_FOLDER / "depthfm_out"
    return out


def commands(tmp_path: Path, out: Path) -> list[tuple[str, list[str], str]]:
    """(tool, argv, flag): each would otherwise fail on its missing checkpoint, or run (eval-fusion)."""
    missing = str(tmp_path / "missing.ckpt")
    image = str(tmp_path / "image.png")
    return [
        ("predict", [image, "--checkpoint", missing, "--vae", str(tmp_path), "-o", str(out)], "--output"),
        ("export", ["--checkpoint", missing, "--vae", str(tmp_path), "--out", str(out)], "--out"),
        ("bench", ["--checkpoint", missing, "--vae", str(tmp_path), "--out", str(out)], "--out"),
        ("demo", ["--checkpoint", missing, "--output", str(out)], "--output"),
        ("replay", ["--make-synthetic-bag", str(out / "bag"), "--checkpoint", missing], "--make-synthetic-bag"),
        ("replay", ["--make-synthetic-bag", str(tmp_path / "bag"), "--checkpoint", missing, "-o", str(out)],
         "--output"),
        ("train", ["--init", "depthfm", "--checkpoint", missing, "--synthetic", "2", "--output", str(out)],
         "--output"),
        ("distill_vae", ["--checkpoint", missing, "--vae", str(tmp_path), "--synthetic", "2", "--output", str(out)],
         "--output"),
        ("eval", ["--checkpoint", missing, "--vae", str(tmp_path), "--synthetic", "1", "--json",
                  str(out / "r.json")], "--json"),
        ("eval_fusion", ["--seeds", "1", "--csv", str(out / "rows.csv")], "--csv"),
    ]


@pytest.mark.parametrize("kind", ["below a file", "read-only"])
def test_every_writing_tool_refuses_an_unwritable_output_folder_before_loading_the_model(tmp_path, capsys, kind):
    folders = bad_folders(tmp_path)
    if kind not in folders:
        pytest.skip("no folder that refuses new files to this user")
    for tool, argv, flag in commands(tmp_path, folders[kind]):
        main = importlib.import_module(f"depthfm_ros.cli.{tool}").main
        assert main(argv) == 2, (tool, argv)
        err = capsys.readouterr().err
        line = next(line for line in err.splitlines() if line.startswith("error: "))
        assert line.startswith(f"error: {flag} ") and ("cannot write" in line or "not a folder" in line), (tool, err)
        assert "Traceback" not in err and "missing.ckpt" not in err, (tool, err)
    assert not (tmp_path / "bag").exists()  # the synthetic bag was not written either


def test_the_check_creates_nothing_and_accepts_a_new_nested_folder(tmp_path):
    target = tmp_path / "new" / "nested"
    assert writable_folder(target, "--output") == target
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="--json .* is a folder"):
        writable_file(tmp_path, "--json")
    assert writable_file(tmp_path / "sub" / "r.json", "--json") == tmp_path / "sub" / "r.json"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (the /sys case covers it)")
def test_a_folder_without_write_permission_is_refused(tmp_path, capsys):
    from depthfm_ros.cli.predict import main

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main([str(tmp_path / "x.png"), "--tiny-model", "-o", str(locked / "out")]) == 2
    assert "error: --output" in capsys.readouterr().err


def test_predict_with_a_missing_and_a_corrupt_image_says_which_is_which(tmp_path, capsys):
    from depthfm_ros.cli.predict import main

    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rc = main([str(tmp_path / "missing.png"), str(tmp_path / "corrupt.png"), "--tiny-model", "--num-steps", "1",
               "--ensemble-size", "1", "--processing-resolution", "64", "-o", str(tmp_path / "out")])
    assert rc == 1
    out = capsys.readouterr().out
    assert "missing.png: cannot read image" in out and "no such file" in out
    assert "corrupt.png: cannot read image" in out and "not an image OpenCV can decode" in out


def test_the_readme_sample_is_what_predict_prints(tmp_path, capsys):
    import re

    from depthfm_ros.cli.predict import main

    if not _system_folder_is_unwritable():
        pytest.skip("no folder that refuses new files to this user")
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    sample = re.search(r"`(error: --output ro/sub: [^`]*)`", readme).group(1)
    assert main([str(tmp_path / "x.png"), "--tiny-model", "-o", "/sys/sub"]) == 2
    printed = capsys.readouterr().err.strip().splitlines()[-1]
    assert printed.replace("/sys", "ro") == sample
