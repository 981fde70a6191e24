"""Start one depthfm_node serving several cameras (config/four_cameras.yaml: front, left, rear, right) with one engine.

    ros2 launch depthfm_ros cameras.launch.py checkpoint:=/models/depthfm-v1 lidar_topic:=/os1/points \
        rear.image_topic:=/rear_usb/image_raw rear.camera_info_topic:=/rear_usb/camera_info

Camera <name> (params_file's cameras, or cameras:='[front, rear]') reads '<name>/image', '<name>/camera_info' and
'<name>/lidar', remapped to image_topic, camera_info_topic (patterns: '{camera}' is the camera's name; default
'{camera}_camera/image_raw', '{camera}_camera/camera_info') and lidar_topic (default 'lidar/points', shared), or to
'<name>.image_topic:=...' for one camera. Every node parameter is an argument of the same name, as in
depth.launch.py, and '<name>.<parameter>:=' sets a camera's own (rear.camera_height_m:=0.6). The arguments live in
depthfm_ros.ros.launch_arguments (docs/ros.md, "Four-camera launch").
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from depthfm_ros.ros.launch_arguments import cameras_arguments, cameras_node_arguments

DEFAULT_PARAMS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "four_cameras.yaml")


def _node(context):
    return [Node(executable="depthfm_node",
                 **cameras_node_arguments(context.launch_configurations, DEFAULT_PARAMS_FILE))]


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(name, default_value=default, description=text)
                              for name, default, text in cameras_arguments(DEFAULT_PARAMS_FILE)]
                             + [OpaqueFunction(function=_node)])
