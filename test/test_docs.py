"""The README and docs stay in step with the code: every documented command line parses with its tool's real
parser (no unknown or misspelt flag), the sample messages are what the code prints, tables carry the labels the
tools print."""

import importlib
import itertools
import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_commands(path: Path, indented: bool = False) -> list[list[str]]:
    """The commands of each fenced code block of ``path`` (with ``indented``, runs of 4-space indented lines count
    as blocks too): continuation lines joined, comments dropped."""
    blocks, block, pending, fenced = [], [], "", False
    for line in [*path.read_text().splitlines(), ""]:
        if line.strip().startswith("```") or not (fenced or pending or indented and line.startswith("    ")):
            if block:
                blocks.append(block)
            block, pending = [], ""
            fenced = fenced != line.strip().startswith("```")
            continue
        text = (pending + " " + line.strip()) if pending else line.strip()
        if text.endswith("\\"):
            pending = text[:-1]
            continue
        pending = ""
        text = re.split(r"\s#\s|^#|   #", text)[0].strip()
        if text:
            block.append(text)
    return blocks


def documented_commands():
    """``depthfm-<tool> ...`` lines of the docs' code blocks (optional parts in [brackets] given)."""
    return [pytest.param(text, id=f"{path.name}:{text[:60]}") for path in DOCS
            for block in code_commands(path, indented=True) for text in (c.replace("[", "").replace("]", "")
                                                                        for c in block)
            if text.startswith("depthfm-") and "..." not in text]


class _Parsed(BaseException):
    """Raised from the patched parse_args: the command's flags were checked, nothing ran."""


@pytest.mark.parametrize("command", documented_commands())
def test_documented_command_lines_parse(monkeypatch, command):
    import argparse

    argv = shlex.split(command)
    tool, args = argv[0], argv[1:]
    real = argparse.ArgumentParser.parse_args

    def check(parser, given=None, namespace=None):
        _, unknown = parser.parse_known_args(given, namespace)
        assert unknown == [], f"{tool}: unknown arguments {unknown}"
        raise _Parsed()

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", check)
    module = importlib.import_module("depthfm_ros.cli." + tool.removeprefix("depthfm-").replace("-", "_"))
    with pytest.raises(_Parsed):
        module.main(args)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", real)


def test_there_are_documented_commands_for_every_tool():
    tools = {shlex.split(p.values[0])[0] for p in documented_commands()}
    assert {"depthfm-predict", "depthfm-export", "depthfm-demo", "depthfm-replay", "depthfm-train",
            "depthfm-eval", "depthfm-distill-vae"} <= tools


def test_sample_parameter_error_is_what_the_node_prints():
    from depthfm_ros.ros.params import ParameterError, validate

    text = (ROOT / "docs" / "ros.md").read_text()
    sample = re.search(r"\(e\.g\. `(parameter 'processing_resolution'[^`]*)`\)", text).group(1)
    with pytest.raises(ParameterError) as info:
        validate({"model": "tiny", "processing_resolution": 100})
    assert str(info.value) == sample


def test_readme_tables_carry_the_labels_the_tools_print():
    from depthfm_ros.cli.eval_fusion import sequence_table
    from depthfm_ros.evaluation.fusion import METHODS, SEQUENCE_SOURCES, markdown_table

    readme = (ROOT / "README.md").read_text()
    header = markdown_table([]).splitlines()[0]
    assert header in readme
    rows = [line for line in readme.splitlines() if line.startswith("| vlp16 |")]
    assert {line.split(" | ")[2] for line in rows} == set(METHODS)
    assert sequence_table({s: {"frame_to_frame_log_std": 0.0, "abs_rel": 0.0, "metric_frames": 1.0}
                           for s in SEQUENCE_SOURCES}).splitlines()[0].startswith("| metric source |")


def test_sample_unknown_parameter_message_is_what_the_node_prints():
    from depthfm_ros.ros.params import ParameterError, validate

    sample = re.search(r"\(`(parameter 'num_step' is not[^`]*)`\)", (ROOT / "docs" / "ros.md").read_text()).group(1)
    with pytest.raises(ParameterError) as info:
        validate({"model": "tiny", "num_step": 1})
    assert str(info.value).startswith(sample)


def test_readme_bench_tables_are_the_tools_tables():
    from depthfm_ros.evaluation.bench_report import FLOP_COLUMNS, LATENCY_COLUMNS, format_table

    readme = (ROOT / "README.md").read_text()
    for columns in (LATENCY_COLUMNS, FLOP_COLUMNS):
        assert format_table([], columns).splitlines()[0] in readme, columns
    labels = {line.split(" | ")[0].removeprefix("| ") for line in readme.splitlines()
              if line.startswith(("| torch", "| onnxruntime", "| tensorrt"))}
    assert labels and labels <= {"torch[cpu]", "onnxruntime fused", "onnxruntime split"}, labels


def test_generated_parameter_and_launch_argument_tables_are_current():
    """docs/ros.md's parameter and launch-argument tables are generated from the one ParamSpec table (the docs had
    the dtype default as fp32 while the node said auto, and lacked onnx_threads and max_batch)."""
    import importlib.util

    from depthfm_ros.ros.launch_arguments import parameter_arguments
    from depthfm_ros.ros.param_docs import default_text
    from depthfm_ros.ros.params import PARAMETERS

    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "scripts" / "docs_tables.py")
    docs_tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs_tables)
    text = (ROOT / "docs" / "ros.md").read_text()
    assert docs_tables.update(text) == text, "run python scripts/docs_tables.py"
    rows = {line.split(" | ")[0].removeprefix("| `").removesuffix("`"): line.split(" | ")
            for line in text.splitlines() if line.startswith("| `")}
    for p in PARAMETERS:  # every parameter once, with the default the node declares
        assert rows[p.name][2] == f"`{default_text(p)}`", p.name
    assert rows["dtype"][2] == "`auto`" and {"onnx_threads", "max_batch"} <= set(rows)
    assert set(parameter_arguments()) - {"use_sim_time"} == {p.name for p in PARAMETERS}
# ------------------------------------------------------------------ try-it commands, run at reduced size
# Each test below runs a command the docs give to try without weights, smaller, and holds what it prints or writes
# to the figures the docs state next to it (counts exactly; a latency below the documented one, since the run is
# smaller), so the docs and the code cannot drift apart.

README = ROOT / "README.md"


def readme_command(marker: str) -> list[str]:
    """argv of the README code line that carries ``marker`` (in its comment)."""
    lines = [line for line in README.read_text().splitlines() if marker in line and line.startswith("depthfm-")]
    assert len(lines) == 1, (marker, lines)
    return shlex.split(lines[0].split(" # ")[0].split("   #")[0])


def with_values(argv: list[str], **values) -> list[str]:
    """argv with the values of the given flags replaced (``make_synthetic_bag=...`` for --make-synthetic-bag)."""
    out = list(argv)
    for name, value in values.items():
        flags = {"--" + name.replace("_", "-")} | ({"-o", "--output"} if name == "output" else set())
        index = next(i for i, arg in enumerate(out) if arg in flags)
        out[index + 1] = str(value)
    return out


def test_replay_try_it_processes_every_frame_as_documented(tmp_path, capsys):
    from depthfm_ros.cli.replay import main

    argv = readme_command("# try it")
    assert argv[0] == "depthfm-replay" and " ".join(argv) in (ROOT / "docs" / "replay.md").read_text()
    text = " ".join(README.read_text().split())
    found = re.search(r"\*\*(\d+) in / (\d+) out / (\d+) dropped, latency p50 (\d+) and (\d+) ms\*\*", text)
    frames_in, frames_out, dropped, *p50s = map(int, found.groups())
    assert frames_in == frames_out and dropped == 0  # the try-it processes every frame
    frames = 4
    run = with_values(argv[1:], make_synthetic_bag=tmp_path / "bag", output=tmp_path / "out")
    assert main([*run, "--synthetic-frames", str(frames), "--synthetic-size", "96x64",
                 "--processing-resolution", "64"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["frames_in"], report["frames_out"], report["frames_dropped"]) == (frames, frames, dropped)
    assert report["latency_ms"]["p50"] < max(p50s)
    assert f"frames in {frames}, out {frames}, dropped 0" in capsys.readouterr().out
    assert any(name.endswith("_preview.png") for name in report["previews"])


def test_demo_try_it_writes_the_documented_files(tmp_path, capsys):
    from depthfm_ros.cli.demo import main

    argv = readme_command("no camera, no weights")
    text = " ".join(README.read_text().split())
    kinds, frames = re.search(r"writes `frame_NNN_\{([\w,]+)\}\.png` for (\d+) frames", text).groups()
    assert int(frames) == int(argv[argv.index("--frames") + 1])
    assert f"frame_NNN_{{{kinds}}}.png" in (ROOT / "docs" / "ros.md").read_text()
    out = tmp_path / "demo"
    assert main([*with_values(argv[1:], frames=2, output=out), "--width", "96", "--height", "64",
                 "--processing-resolution", "64", "--rate", "10", "--timeout", "60"]) == 0
    assert {p.name for p in out.iterdir()} == {f"frame_{i:03d}_{kind}.png" for i in range(2)
                                               for kind in kinds.split(",")}
    assert "depthfm-demo: 2 frame(s) in" in capsys.readouterr().err


def test_predict_try_it_writes_the_documented_files(tmp_path):
    import cv2
    import numpy as np

    from depthfm_ros.cli.predict import main

    argv = readme_command("mechanics only, no weights")
    text = " ".join(README.read_text().split())
    paragraph = text[text.index("For each image it writes"):]
    paragraph = paragraph[:paragraph.index(". ")]
    suffixes = re.findall(r"`<name>(_\w+\.\w+)`", paragraph)
    keys = re.findall(r"`(\w+)`", re.search(r"`<name>_depth\.npz` \(([^)]*)\)", paragraph).group(1))
    assert suffixes == ["_depth.png", "_depth.npz", "_preview.png"] and keys == ["z", "depth", "uncertainty"]
    image = argv[-1]
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / image), rgb)
    assert main([*argv[1:-1], str(tmp_path / image), "--processing-resolution", "64", "-o",
                 str(tmp_path / "out")]) == 0
    stem = Path(image).stem
    assert {p.name for p in (tmp_path / "out").iterdir()} == {stem + suffix for suffix in suffixes}
    assert sorted(np.load(tmp_path / "out" / f"{stem}_depth.npz").files) == sorted(keys)
    png = cv2.imread(str(tmp_path / "out" / f"{stem}_depth.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and (png.min(), png.max()) == (0, 65535)  # "0..65535 = the official min-max"


def test_bench_no_flops_writes_the_documented_csv_and_plot(tmp_path, capsys):
    from depthfm_ros.cli.bench import main
    from depthfm_ros.evaluation.bench_report import LATENCY_COLUMNS, format_table

    text = " ".join(README.read_text().split())
    assert "`depthfm-bench --no-flops --torch-threads 2`" in text
    assert "writes `bench_latency.csv` and `bench.png`" in text and "unless `--no-flops`" in text
    assert main(["--no-flops", "--no-onnx", "--height", "64", "--width", "64", "--repeats", "1",
                 "--input-size", "48x64", "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"bench_latency.csv", "bench.png"}
    printed = capsys.readouterr()
    assert format_table([], LATENCY_COLUMNS).splitlines()[0] in printed.out
    assert "| torch[cpu] |" in printed.out and "on 1 thread(s)" in printed.err  # auto: OMP_NUM_THREADS=1 here


def test_bench_ensemble_defaults_are_the_readme_tables_settings(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_ensemble", ROOT / "scripts" / "bench_ensemble.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    defaults = script.build_parser().parse_args([])
    text = " ".join(README.read_text().split())
    lines = README.read_text().splitlines()
    header = "| steps | ensemble | batched ms/frame | looped ms/frame | speed-up |"
    start = lines.index(header)
    rows = [line.split(" | ") for line in itertools.takewhile(lambda x: x.startswith("| "), lines[start + 2:])]
    grid = {(int(r[0].removeprefix("| ")), int(r[1])) for r in rows}
    assert grid == {(int(k), int(m)) for k in defaults.steps.split(",") for m in defaults.ensembles.split(",")}
    h, w = defaults.size.split("x")
    assert f"{h}×{w}" in text and f"{defaults.threads} thread, median of {defaults.repeats}" in text
    script.main(["--size", "64x64", "--repeats", "1", "--steps", "1", "--ensembles", "1,2"])
    out = capsys.readouterr().out
    assert header in out and "1 thread(s), median of 1" in out and len(re.findall(r"^\| 1 \| [12] \|", out, re.M)) == 2


def _ros_args(argv: list[str]) -> tuple[dict, dict, list]:
    """(-p parameters, -r remaps, --params-file files) of a ``--ros-args`` command line."""
    params, remaps, files = {}, {}, []
    for flag, value in zip(argv, argv[1:]):
        if flag == "-p":
            params.update([value.split(":=", 1)])
        elif flag == "-r":
            remaps.update([value.split(":=", 1)])
        elif flag == "--params-file":
            files.append(value)
    return params, remaps, files


def _launch_tables() -> tuple[dict, dict]:
    """TOPIC_ARGUMENTS and ARGUMENT_ALIASES of the launch files (ros/launch_arguments.py, importable without launch)."""
    from depthfm_ros.ros.launch_arguments import ARGUMENT_ALIASES, TOPIC_ARGUMENTS

    return TOPIC_ARGUMENTS, ARGUMENT_ALIASES


def _check_cameras_launch_twin(name: str, argv: list[str], twin: list[str]) -> None:
    """A cameras.launch.py line's twin starts the node that launch_arguments.cameras_node_arguments gives its
    arguments: the same parameter file, parameters and every camera's remappings."""
    import yaml

    from depthfm_ros.ros.launch_arguments import cameras_arguments, cameras_node_arguments

    default = "config/four_cameras.yaml"
    given = dict(arg.split(":=", 1) for arg in argv[4:])
    declared = {arg: value for arg, value, _ in cameras_arguments(str(ROOT / default))}
    want = cameras_node_arguments({**declared, **given}, str(ROOT / default))
    params, remaps, files = _ros_args(twin)
    assert files == [given.get("params_file", default)] and (ROOT / files[0]).is_file(), (name, twin)
    assert {k: yaml.safe_load(v) for k, v in params.items()} == want["parameters"][1], (name, twin)
    assert remaps == dict(want["remappings"]), (name, twin)


def test_every_ros2_launch_and_run_line_has_its_depthfm_node_equivalent_beside_it():
    """The pip set-up has no ros2 command: each ros2 launch / run line is followed, in the same code block, by the
    depthfm_node --ros-args line that starts the same node with the same parameters and topics."""
    from depthfm_ros.ros.params import ALIASES, SPECS

    topics, aliases = _launch_tables()
    seen = 0
    for path in DOCS:
        for block in code_commands(path):
            for i, command in enumerate(block):
                argv = shlex.split(command)
                if argv[:2] not in (["ros2", "launch"], ["ros2", "run"]) or "depthfm_ros" not in argv:
                    continue
                seen += 1
                executable = "depthfm_lifecycle_node " if "depth_lifecycle.launch.py" in argv or \
                    "depthfm_lifecycle_node" in argv else "depthfm_node "
                twin = next((shlex.split(c) for c in block[i + 1:] if c.startswith(executable)), None)
                assert twin is not None, f"{path.name}: no {executable.strip()} line after: {command}"
                if "cameras.launch.py" in argv:
                    _check_cameras_launch_twin(path.name, argv, twin)
                    continue
                params, remaps, files = _ros_args(twin)
                assert files == ["config/depthfm.yaml"] and (ROOT / files[0]).is_file(), (path.name, twin)
                assert all(name in SPECS or name in ALIASES for name in params), (path.name, params)
                if argv[1] == "run":
                    assert (params, remaps) == _ros_args(argv)[:2], (path.name, command)
                    continue
                given = {k: v for k, v in (arg.split(":=", 1) for arg in argv[4:]) if k != "autostart"}
                want_params = {aliases.get(k, k): v for k, v in given.items() if k not in topics}
                want_remaps = {topic: given.get(arg, default) for arg, (topic, default) in topics.items()
                               if topic != "lidar" or given.get("use_lidar") == "true"}
                assert (params, remaps) == (want_params, want_remaps), (path.name, command)
    assert seen >= 5


def test_the_readme_preview_input_scene_comes_from_the_documented_command(tmp_path):
    import importlib.util

    import cv2
    import numpy as np

    line = next(c for block in code_commands(README) for c in block if c.startswith("python scripts/synthetic_scene"))
    argv = with_values(shlex.split(line)[2:], output=tmp_path / "scene.png")
    spec = importlib.util.spec_from_file_location("synthetic_scene", ROOT / "scripts" / "synthetic_scene.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(argv) == 0
    scene = cv2.imread(str(tmp_path / "scene.png"))
    preview = cv2.imread(str(ROOT / "docs" / "images" / "tiny_trained_preview.png"))
    h, w = scene.shape[:2]
    assert (w, h) == (256, 192) and np.load(tmp_path / "scene_depth_m.npy").shape == (h, w)
    assert any(np.array_equal(preview[top:top + h, :w], scene) for top in range(preview.shape[0] - h + 1))


def test_the_node_gives_the_documented_range_message_not_rclpys(ros_context):
    """processing_resolution:=100 used to print rclpy's raw range text; the node now says what the docs say."""
    from rclpy.parameter import Parameter

    from depthfm_ros.ros.node import DepthFMNode
    from depthfm_ros.ros.params import ParameterError

    text = (ROOT / "docs" / "ros.md").read_text()
    sample = re.search(r"\(e\.g\. `(parameter 'processing_resolution'[^`]*)`\)", text).group(1)
    with pytest.raises(ParameterError) as info:
        DepthFMNode(context=ros_context, parameter_overrides=[Parameter("model", value="tiny"),
                                                              Parameter("processing_resolution", value=100)])
    assert str(info.value) == sample
