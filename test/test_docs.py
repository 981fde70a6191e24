"""The README and docs stay in step with the code: every documented command line parses with its tool's real
parser (no unknown or misspelt flag), the sample messages are what the code prints, tables carry the labels the
tools print."""

import importlib
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_commands():
    """``depthfm-<tool> ...`` lines of the docs' code blocks, continuation lines joined, comments dropped."""
    out = []
    for path in DOCS:
        in_code, pending = False, ""
        for line in path.read_text().splitlines():
            if line.strip().startswith("```"):
                in_code, pending = not in_code, ""
                continue
            if not (in_code or line.startswith("    ") or pending):  # fenced or indented code
                continue
            text = (pending + " " + line.strip()) if pending else line.strip()
            if text.endswith("\\"):
                pending = text[:-1]
                continue
            pending = ""
            text = text.split(" # ")[0].split("   #")[0].replace("[", "").replace("]", "").strip()
            if text.startswith("depthfm-") and "..." not in text:
                out.append(pytest.param(text, id=f"{path.name}:{text[:60]}"))
    return out


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
    from depthfm_ros.cli.bench import FLOP_COLUMNS, LATENCY_COLUMNS, format_table

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
    from depthfm_ros.ros.params import PARAMETERS, default_text

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
