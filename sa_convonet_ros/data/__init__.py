"""Synthetic data: procedural rooms with exact occupancy and simulated robot scans."""
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
    Box,
    Capsule,
    Cone,
    Cylinder,
    Primitive,
    RoomConfig,
    Scene,
    Sphere,
    Torus,
    generate_room,
    make_box_scene,
    make_crossing_planes_scene,
    make_primitive_gallery_scene,
    rotation_from_z,
    sample_occupancy_queries,
    yaw_rotation,
)
