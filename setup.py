"""Python packaging of sa_convonet_ros.

The ROS build (colcon) uses CMakeLists.txt, which also generates this package's interfaces; this file
makes the ROS-free reconstruction core and its `sa-convonet` command installable with pip.
"""
from setuptools import find_packages, setup

setup(
    name="sa_convonet_ros",
    version="0.1.0",
    description="Sign-agnostic Convolutional Occupancy Network surface reconstruction for ROS 2 point-cloud maps",
    license="MIT",
    packages=find_packages(include=["sa_convonet_ros", "sa_convonet_ros.*"]),
    package_data={"sa_convonet_ros": ["models/*.pt", "models/*.md"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-image>=0.21",
        "trimesh>=4.0",
        "open3d>=0.18",
        "tqdm>=4.60",
        "pyyaml>=6.0",
        "pillow>=9.0",
        "rosbags>=0.11",
    ],
    # `pip install sa_convonet_ros[ray]`: the windows' optimisation on Ray workers (ray_runner.py)
    extras_require={"ray": ["ray>=2.9"]},
    entry_points={
        "console_scripts": [
            "sa-convonet = sa_convonet_ros.cli:main",
        ],
    },
)
