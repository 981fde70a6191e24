"""LiDAR fusion without ROS: log-depth alignment, completion, and one frame from prediction + cloud."""
