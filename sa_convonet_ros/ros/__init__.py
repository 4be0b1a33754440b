"""ROS 2 message conversions: point clouds in, meshes out."""
