"""DepthFM on robots: fast generative monocular depth (flow matching) as a pure library plus a thin ROS 2 layer.

Data flows one way::

    RGB uint8 -> processing (resize, [-1, 1]) -> backend (encode -> k Euler steps -> decode)
    -> log-depth z, ensemble std -> [LiDAR alignment / completion] -> depth, uncertainty, points

Nothing in this package outside ``depthfm_ros.ros`` imports rclpy.
"""

__version__ = "0.1.0"
