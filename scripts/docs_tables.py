"""Write (or check) the tables of docs/ros.md that are generated from the code: the node's parameters (from the one
ParamSpec table, depthfm_ros/ros/param_table.py) and the launch arguments (depthfm_ros/ros/launch_arguments.py).

    python scripts/docs_tables.py           # rewrite the generated blocks
    python scripts/docs_tables.py --check   # exit 1 when a block differs (test/test_docs.py does the same)

A generated block sits between ``<!-- generated: NAME ... -->`` and ``<!-- end: NAME -->``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ros.md"


def blocks() -> dict[str, str]:
    from depthfm_ros.ros import launch_arguments, param_docs

    return {"parameters": param_docs.markdown_table(), "launch arguments": launch_arguments.markdown_table()}


def update(text: str) -> str:
    """``text`` with every generated block replaced by its current content (ValueError if a block is missing)."""
    for name, table in blocks().items():
        pattern = re.compile(rf"(<!-- generated: {re.escape(name)} [^\n]*-->\n)(.*?)(<!-- end: {re.escape(name)} -->)",
                             re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"{DOC} has no generated block '{name}'")
        text = pattern.sub(lambda m: m.group(1) + table + m.group(3), text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when the doc is out of date")
    args = parser.parse_args(argv)
    text = DOC.read_text()
    new = update(text)
    if args.check:
        if new != text:
            print(f"{DOC} is out of date: run python scripts/docs_tables.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
