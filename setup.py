"""ament_python package set-up: works with colcon on a robot and with plain pip elsewhere."""

from glob import glob

from setuptools import find_packages, setup

package_name = "depthfm_ros"

# ROS 2 (kilted) Python wheels from PyPI. On a robot these come from the ROS distro instead.
ROS_WHEELS = [
    "ros-rclpy",
    "ros-rmw-fastrtps-cpp",
    "ros-sensor-msgs",
    "ros-std-msgs",
    "ros-geometry-msgs",
    "ros-diagnostic-msgs",
    "ros-builtin-interfaces",
]

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "opencv-python-headless>=4.8",
        "torch>=2.1",
        "diffusers>=0.30",
        "safetensors>=0.4",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "tqdm>=4.66",
        "matplotlib>=3.7",
        "rosbags>=0.10",
        "PyYAML>=6",
        "Pillow>=9",  # reads a compressed image's size from its header before decoding
    ],
    extras_require={
        "ros": ROS_WHEELS,
        # TensorRT 10.x is the tested range (11 removed the FP16 builder flag); CUDA streams come from torch
        "tensorrt": ["tensorrt>=10,<11"],
        "train": ["accelerate>=0.30", "tensorboard>=2.15"],
        "simplify": ["onnxslim>=0.1.30"],
        "test": ["pytest>=8", "pytest-xdist>=3.2", "ruff>=0.6", "onnxscript>=0.1", "onnxslim>=0.1.30",
                 "accelerate>=0.30", "tensorboard>=2.15"],
    },
    zip_safe=True,
    maintainer="depthfm_ros maintainers",
    maintainer_email="depthfm-ros@example.org",
    description="DepthFM (flow-matching monocular depth) for ROS 2: depth, uncertainty, LiDAR-completed depth, points.",
    license="MIT",
    entry_points={
        "console_scripts": [
            "depthfm_node = depthfm_ros.ros.entry_points:depthfm_node",
            "depthfm_lifecycle_node = depthfm_ros.ros.entry_points:depthfm_lifecycle_node",
            "depthfm-predict = depthfm_ros.cli.predict:main",
            "depthfm-export = depthfm_ros.cli.export:main",
            "depthfm-bench = depthfm_ros.cli.bench:main",
            "depthfm-eval = depthfm_ros.cli.eval:main",
            "depthfm-eval-fusion = depthfm_ros.cli.eval_fusion:main",
            "depthfm-train = depthfm_ros.cli.train:main",
            "depthfm-distill-vae = depthfm_ros.cli.distill_vae:main",
            "depthfm-demo = depthfm_ros.cli.demo:main",
            "depthfm-replay = depthfm_ros.cli.replay:main",
        ],
    },
)
