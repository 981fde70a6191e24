"""Start depthfm_node as a managed (lifecycle) node: the same arguments as depth.launch.py, plus ``autostart``.

    ros2 launch depthfm_ros depth_lifecycle.launch.py checkpoint:=/models/depthfm-v1 autostart:=true

With ``autostart:=true`` (the default) launch configures the node as soon as it is up (the engine loads and warms:
minutes on a first TensorRT build, with progress in the log) and activates it the first time it is inactive, as
nav2_lifecycle_manager's ``autostart`` does. With ``autostart:=false`` the node waits for lifecycle services:
``ros2 lifecycle set /depthfm configure``, or a lifecycle manager listing it in ``node_names`` (docs/ros.md,
"Managed start-up").
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from depthfm_ros.ros.launch_arguments import all_arguments, flag, node_arguments

DEFAULT_PARAMS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "depthfm.yaml")


def _managed_node(context):
    kwargs = node_arguments(context.launch_configurations, DEFAULT_PARAMS_FILE)
    node = LifecycleNode(executable="depthfm_lifecycle_node", **kwargs)
    if not flag("autostart", context.launch_configurations.get("autostart", "true")):
        return [node]
    activate = RegisterEventHandler(OnStateTransition(  # once: a later configure (after cleanup) stays inactive
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive", handle_once=True,
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    return [activate, node, configure]


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(name, default_value=default, description=text)
                              for name, default, text in all_arguments(DEFAULT_PARAMS_FILE, lifecycle=True)]
                             + [OpaqueFunction(function=_managed_node)])
