"""The ROS 2 side: the node and its parameters, PointCloud2 in, meshes out as messages, and the demo."""
