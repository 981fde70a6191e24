"""Start depthfm_node with config/depthfm.yaml; launch arguments override single parameters and remap topics.

    ros2 launch depthfm_ros depth.launch.py checkpoint:=/models/depthfm-v1.ckpt vae:=/models/sd-vae num_steps:=2 \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

Every node parameter is an argument of the same name (docs/ros.md, "Launch arguments"); an empty one (the default)
keeps the value from ``params_file``. The arguments live in depthfm_ros.ros.launch_arguments, shared with
depth_lifecycle.launch.py (the managed node).
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from depthfm_ros.ros.launch_arguments import all_arguments, node_arguments

DEFAULT_PARAMS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "depthfm.yaml")


def _node(context):
    return [Node(executable="depthfm_node", **node_arguments(context.launch_configurations, DEFAULT_PARAMS_FILE))]


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(name, default_value=default, description=text)
                              for name, default, text in all_arguments(DEFAULT_PARAMS_FILE)]
                             + [OpaqueFunction(function=_node)])
