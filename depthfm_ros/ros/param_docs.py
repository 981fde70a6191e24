"""The parameter table of docs/ros.md, generated from :data:`depthfm_ros.ros.param_table.PARAMETERS` (test/test_docs.py
checks the doc holds exactly this; scripts/docs_tables.py writes it)."""

from __future__ import annotations

from .param_table import ALIASES, PARAMETERS, ParamSpec

_TYPE_NAMES = {bool: "bool", int: "int", float: "double", str: "string", tuple: "string[]"}


def type_name(spec: ParamSpec) -> str:
    """The parameter's ROS type as `ros2 param describe` says it (double[3] for a fixed-length double array)."""
    return f"double[{len(spec.default)}]" if isinstance(spec.default, list) else _TYPE_NAMES[type(spec.default)]


def default_text(spec: ParamSpec) -> str:
    """The default as a YAML parameter file writes it."""
    if isinstance(spec.default, bool):
        return "true" if spec.default else "false"
    if isinstance(spec.default, (list, tuple)):
        return "[" + ", ".join(repr(v) for v in spec.default) + "]"
    return '""' if spec.default == "" else str(spec.default)


def markdown_table() -> str:
    """The parameter table of docs/ros.md, generated from :data:`PARAMETERS` (test/test_docs.py checks the doc holds
    exactly this); old names are listed with the parameter they stand for."""
    old = {new: [a for a, n in ALIASES.items() if n == new] for new in ALIASES.values()}
    rows = ["| name | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for spec in PARAMETERS:
        meaning = spec.description.replace("|", "\\|")
        if spec.per_camera:
            meaning += " (per camera too: `<camera>.{}`)".format(spec.name)
        if spec.name in old:
            meaning += f" (old name{'s' if len(old[spec.name]) > 1 else ''}: {', '.join(old[spec.name])})"
        rows.append(f"| `{spec.name}` | {type_name(spec)} | `{default_text(spec)}` | {spec.constraints} | {meaning} |")
    return "\n".join(rows) + "\n"
