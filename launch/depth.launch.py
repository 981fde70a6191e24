"""Start depthfm_node with config/depthfm.yaml; launch arguments override single parameters and remap topics.

    ros2 launch depthfm_ros depth.launch.py checkpoint:=/models/depthfm-v1.ckpt vae:=/models/sd-vae num_steps:=2 \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

An empty parameter argument (the default) keeps the value from ``params_file``.
"""

import os

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from depthfm_ros.ros.params import SPECS, coerce

DEFAULT_PARAMS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "depthfm.yaml")

# launch arguments named as the node parameters they set (docs/ros.md describes each); "" leaves the params_file
# value. Every argument is typed by its parameter's declared type (a whole number for a decimal parameter is that
# decimal: lidar_timeout_sec:=0).
PARAMETER_ARGUMENTS = {
    "model": "checkpoint | tiny (random demo model)",
    "checkpoint": "depthfm-v1.ckpt or a converted model folder",
    "vae": "SD VAE folder (diffusers format), needed with a .ckpt",
    "vae_kind": "full | tiny (distilled tiny VAE)",
    "tiny_vae": "tiny VAE folder from depthfm-distill-vae",
    "engine": "exported .onnx / split folder, or a built TensorRT .engine",
    "backend": "auto | tensorrt | onnxruntime | torch",
    "dtype": "auto | fp32 | fp16 | bf16 (auto: fp16 on tensorrt, fp32 elsewhere)",
    "num_steps": "Euler flow-matching steps k",
    "ensemble_size": "ensemble members M (>= 2 for uncertainty)",
    "processing_resolution": "longest side the model sees (multiple of 64, 0 = native)",
    "image_transport": "raw | compressed",
    "use_lidar": "true: align depth to the cloud on lidar_topic (metres, completed depth)",
    "lidar_slop_sec": "largest image/cloud stamp difference (s)",
    "lidar_timeout_sec": "no cloud for this long (s): publish relative depth until clouds return; 0 = strict pairing",
    "metric_source": "auto | lidar | ground | fixed | none: where metres come from",
    "metric_hold_sec": "carry the last LiDAR scale through gaps this long (s)",
    "camera_height_m": "camera height above a flat ground (m): the ground source for camera-only robots",
    "ground_frame": "tf frame on the ground, z up (e.g. base_footprint), for the ground source",
    "image_rectified": "true: the image is rectified (image_rect), project with camera_info P",
    "publish_points": "true: publish depthfm/points (PointCloud2)",
    "completion_checkpoint": "DepthCompletionFM folder for the completed depth",
    "torch_threads": "torch intra-op threads (0 = auto: OMP_NUM_THREADS, else the cores minus one)",
    "onnx_threads": "onnxruntime intra-op threads (0 = auto, as torch_threads)",
    "max_batch": "TensorRT engine profile: images per call (as depthfm-export --max-batch)",
}
# documented older argument names -> the argument they stand for
ARGUMENT_ALIASES = {"steps": "num_steps", "ensemble": "ensemble_size", "lidar_slop": "lidar_slop_sec",
                    "lidar_timeout": "lidar_timeout_sec"}

# launch argument -> (node topic it remaps, default target)
TOPIC_ARGUMENTS = {
    "image_topic": ("image", "/camera/image_raw"),
    "camera_info_topic": ("camera_info", "/camera/camera_info"),
    "lidar_topic": ("lidar", "/lidar/points"),  # subscribed with use_lidar
}


def typed(parameter: str, text: str):
    """A launch argument's text as the value its node parameter declares (``"0"`` -> 0.0 for a double, ``"2.0"`` -> 2
    for an integer; anything else is left for the node's validation to name)."""
    if isinstance(SPECS[parameter].default, str):
        return text  # paths and choices stay text
    return coerce(parameter, yaml.safe_load(text))


def parameter_overrides(launch_configurations: dict) -> dict:
    """Typed node parameters for the non-empty parameter arguments (an alias counts when its argument is empty)."""
    overrides = {}
    for argument, parameter in [*((a, a) for a in PARAMETER_ARGUMENTS), *ARGUMENT_ALIASES.items()]:
        text = launch_configurations.get(argument, "")
        if text != "" and parameter not in overrides:
            overrides[parameter] = typed(parameter, text)
    return overrides


def _node(context):
    cfg = context.launch_configurations
    return [Node(
        package="depthfm_ros",
        executable="depthfm_node",
        name=cfg.get("node_name", "depthfm"),
        namespace=cfg.get("namespace", ""),
        parameters=[cfg.get("params_file", DEFAULT_PARAMS_FILE), parameter_overrides(cfg)],
        remappings=[(topic, cfg.get(argument, default)) for argument, (topic, default) in TOPIC_ARGUMENTS.items()],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument("params_file", default_value=DEFAULT_PARAMS_FILE, description="node parameter YAML"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("node_name", default_value="depthfm", description="node name"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value="", description=f"{text} (empty: from params_file)")
                  for name, text in PARAMETER_ARGUMENTS.items()]
    arguments += [DeclareLaunchArgument(alias, default_value="", description=f"old name of {name}")
                  for alias, name in ARGUMENT_ALIASES.items()]
    arguments += [DeclareLaunchArgument(name, default_value=default, description=f"topic remapped to '{topic}'")
                  for name, (topic, default) in TOPIC_ARGUMENTS.items()]
    return LaunchDescription(arguments + [OpaqueFunction(function=_node)])
