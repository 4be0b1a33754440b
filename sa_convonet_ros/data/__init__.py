"""Synthetic data: procedural rooms with exact occupancy and simulated robot scans."""
from .primitives import Box, Capsule, Cone, Cylinder, Primitive, Sphere, Torus, rotation_from_z, yaw_rotation
from .rooms import RoomConfig, generate_room
from .scans import (
    SCAN_SETTINGS,
    ScanInfo,
    ScanSetting,
    plan_camera_poses,
    simulate_scans,
    surface_cloud,
    voxel_downsample,
)
from .scenes import (
    Scene,
    make_box_scene,
    make_crossing_planes_scene,
    make_primitive_gallery_scene,
    sample_occupancy_queries,
)

__all__ = [
    "Box", "Capsule", "Cone", "Cylinder", "Primitive", "Sphere", "Torus", "rotation_from_z", "yaw_rotation",
    "RoomConfig", "generate_room", "SCAN_SETTINGS", "ScanInfo", "ScanSetting", "plan_camera_poses",
    "simulate_scans", "surface_cloud", "voxel_downsample", "Scene", "make_box_scene",
    "make_crossing_planes_scene", "make_primitive_gallery_scene", "sample_occupancy_queries",
]
