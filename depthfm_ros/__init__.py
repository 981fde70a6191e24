"""DepthFM on robots: fast generative monocular depth (flow matching) as a pure library plus a thin ROS 2 layer.

Data flows one way::

    RGB uint8 -> processing (resize, [-1, 1]) -> backends (encode -> k Euler steps -> decode; sampler)
    -> pipeline.DepthPrediction (z_hw, relative_depth_hw, std_z_hw)
    -> fusion.frame.fuse_frame with a LiDAR cloud (geometry projection, fusion alignment + completion)
    -> ros.node: depth, uncertainty, completed depth, points as messages

Layout: ``shapes`` (leaf shape rules), ``settings`` (ModelSettings, the choice lists), ``models/``, ``sampler``,
``processing``, ``pipeline``, ``backends/``, ``geometry/``, ``fusion/``, ``evaluation/``, ``training/``, ``sim/``,
``ros/`` (the only package importing rclpy) and ``cli/`` (parse, build settings, call the library, print). Imports
point down only, in the order of layers written once in ``test/test_layering.py``.
"""

__version__ = "0.1.0"
