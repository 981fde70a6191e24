"""Start depthfm_node with config/depthfm.yaml; launch arguments override single parameters and remap topics.

    ros2 launch depthfm_ros depth.launch.py checkpoint:=/models/depthfm-v1.ckpt vae:=/models/sd-vae \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

An empty parameter argument (the default) keeps the value from ``params_file``.
"""

import os

import yaml
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from launch import LaunchDescription

DEFAULT_PARAMS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "depthfm.yaml")

# launch argument -> node parameter; "" leaves the params_file value.
PARAMETER_ARGUMENTS = {
    "model": ("model", "checkpoint | tiny (random demo model)"),
    "checkpoint": ("checkpoint", "depthfm-v1.ckpt or a converted model folder"),
    "vae": ("vae", "SD VAE folder (diffusers format), needed with a .ckpt"),
    "vae_kind": ("vae_kind", "full | tiny (distilled tiny VAE)"),
    "tiny_vae": ("tiny_vae", "tiny VAE folder from depthfm-distill-vae"),
    "engine": ("engine", "prebuilt TensorRT .engine or .onnx file"),
    "backend": ("backend", "auto | tensorrt | onnxruntime | torch"),
    "dtype": ("dtype", "fp32 | fp16 | bf16"),
    "steps": ("num_steps", "Euler flow-matching steps"),
    "ensemble": ("ensemble_size", "ensemble members (>= 2 for uncertainty)"),
    "processing_resolution": ("processing_resolution", "longest side the model sees (multiple of 64, 0 = native)"),
    "image_transport": ("image_transport", "raw | compressed"),
    "use_lidar": ("use_lidar", "true: align depth to the cloud on lidar_topic (metres, completed depth)"),
    "lidar_slop": ("lidar_slop_sec", "largest image/cloud stamp difference (s)"),
    "lidar_timeout": ("lidar_timeout_sec", "no cloud for this long (s): publish relative depth until clouds return; "
                      "0 = strict pairing"),
    "publish_points": ("publish_points", "true: publish depthfm/points (PointCloud2)"),
    "completion_checkpoint": ("completion_checkpoint", "DepthCompletionFM folder for the completed depth"),
    "torch_threads": ("torch_threads", "torch intra-op threads (0 = torch default)"),
}

PATH_PARAMETERS = ("checkpoint", "vae", "tiny_vae", "engine", "completion_checkpoint")  # kept as text

# launch argument -> (node topic it remaps, default target)
TOPIC_ARGUMENTS = {
    "image_topic": ("image", "/camera/image_raw"),
    "camera_info_topic": ("camera_info", "/camera/camera_info"),
    "lidar_topic": ("lidar", "/lidar/points"),  # subscribed with use_lidar
}


def parameter_overrides(launch_configurations: dict) -> dict:
    """Typed node parameters for the non-empty parameter arguments ("4" -> 4, "fp16" -> "fp16")."""
    overrides = {}
    for argument, (parameter, _) in PARAMETER_ARGUMENTS.items():
        text = launch_configurations.get(argument, "")
        if text != "":
            value = text if parameter in PATH_PARAMETERS else yaml.safe_load(text)
            overrides[parameter] = value
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
                  for name, (_, text) in PARAMETER_ARGUMENTS.items()]
    arguments += [DeclareLaunchArgument(name, default_value=default, description=f"topic remapped to '{topic}'")
                  for name, (topic, default) in TOPIC_ARGUMENTS.items()]
    return LaunchDescription(arguments + [OpaqueFunction(function=_node)])
