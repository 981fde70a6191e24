"""package.xml resolves with rosdep: every key is a kilted package or a rosdep key, checked against a snapshot of
ros/rosdistro (commit 8468e88ccd: kilted/distribution.yaml and rosdep/python.yaml), and every ROS package the code
imports is declared."""

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Released in kilted/distribution.yaml (package -> repository), the ones this package may name.
KILTED_PACKAGES = {
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "builtin_interfaces": "rcl_interfaces",
    "sensor_msgs": "common_interfaces", "std_msgs": "common_interfaces", "geometry_msgs": "common_interfaces",
    "diagnostic_msgs": "common_interfaces", "sensor_msgs_py": "common_interfaces",
    "message_filters": "message_filters", "tf2_ros": "geometry2", "tf2_ros_py": "geometry2", "launch": "launch",
    "launch_ros": "launch_ros", "ros2launch": "launch_ros", "cv_bridge": "vision_opencv",
}
# Keys of rosdep/python.yaml (with their Ubuntu packages).
ROSDEP_PYTHON_KEYS = {
    "python3-numpy": "python3-numpy", "python3-opencv": "python3-opencv", "python3-scipy": "python3-scipy",
    "python3-yaml": "python3-yaml", "python3-pil": "python3-pil", "python3-tqdm": "python3-tqdm",
    "python3-matplotlib": "python3-matplotlib", "python3-torch": "python3-torch", "python3-pytest": "python3-pytest",
}
# Names that are NOT rosdep keys (found missing in the snapshot): never in package.xml.
NOT_KEYS = {"ament_python", "python3-diffusers", "python3-safetensors", "python3-onnxruntime", "python3-onnx",
            "python3-rosbags"}
# Python module -> the package.xml key that provides it on a robot.
MODULE_KEYS = {"rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "sensor_msgs": "sensor_msgs",
               "diagnostic_msgs": "diagnostic_msgs", "sensor_msgs_py": "sensor_msgs_py",
               "message_filters": "message_filters", "tf2_ros": "tf2_ros_py", "launch": "launch",
               "launch_ros": "launch_ros", "numpy": "python3-numpy", "cv2": "python3-opencv",
               "scipy": "python3-scipy", "yaml": "python3-yaml", "PIL": "python3-pil", "tqdm": "python3-tqdm",
               "matplotlib": "python3-matplotlib", "torch": "python3-torch"}


def _keys():
    root = ET.parse(ROOT / "package.xml").getroot()
    return {el.tag: [e.text for e in root.findall(el.tag)] for el in root} | {
        "all": [e.text for e in root if e.tag.endswith("depend")]}


def test_every_key_resolves_with_rosdep():
    keys = _keys()["all"]
    assert keys, "package.xml declares no dependency"
    unknown = [k for k in keys if k not in KILTED_PACKAGES and k not in ROSDEP_PYTHON_KEYS]
    assert unknown == [] and not set(keys) & NOT_KEYS
    assert "buildtool_depend" not in _keys()  # ament_python is a build type (export), not a rosdep key


def test_every_imported_ros_or_system_module_is_declared():
    imported = set()
    for path in [*(ROOT / "depthfm_ros").rglob("*.py"), ROOT / "launch" / "depth.launch.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    declared = set(_keys()["all"])
    missing = sorted(f"{m} ({MODULE_KEYS[m]})" for m in imported & set(MODULE_KEYS) if MODULE_KEYS[m] not in declared)
    assert missing == []
    assert "cv_bridge" not in imported  # images are decoded by our own code (cv_bridge mis-decodes padded rows)
