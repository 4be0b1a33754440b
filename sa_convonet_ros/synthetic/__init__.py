"""Synthetic worlds with exact geometry, for training, tests, benchmarks and the demo: procedural rooms,
multi-room floors and a building exterior, and simulated robot scans of them. The reconstruction and the
node never import this package."""
from .exterior import ExteriorConfig, LidarSetting, generate_exterior, observed_by_lidar, scan_exterior
from .floors import Floor, FloorConfig, generate_floor, scan_floor
from .freeform import Blob, FreeformPrimitive, HoledBox, Revolved, Sheet, SmoothBlend, Superellipsoid, Tube
from .objects import HELD_OUT_FAMILIES, TEST_FAMILIES, TRAINING_FAMILIES
from .primitives import Box, Capsule, Cone, Cylinder, Primitive, Sphere, Torus, rotation_from_z, yaw_rotation
from .rooms import HELD_OUT_WORLD, TEST_WORLD, TRAINING_WORLD, RoomConfig, generate_room
from .scans import (
    SCAN_SETTINGS,
    ScanInfo,
    ScanSetting,
    cast_rays,
    in_sight,
    observed_by_cameras,
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
    "ExteriorConfig", "LidarSetting", "generate_exterior", "observed_by_lidar", "scan_exterior",
    "Box", "Capsule", "Cone", "Cylinder", "Primitive", "Sphere", "Torus", "rotation_from_z", "yaw_rotation",
    "Floor", "FloorConfig", "generate_floor", "scan_floor",
    "Blob", "FreeformPrimitive", "HoledBox", "Revolved", "Sheet", "SmoothBlend", "Superellipsoid", "Tube",
    "HELD_OUT_FAMILIES", "TEST_FAMILIES", "TRAINING_FAMILIES", "HELD_OUT_WORLD", "TEST_WORLD", "TRAINING_WORLD",
    "RoomConfig", "generate_room", "SCAN_SETTINGS", "ScanInfo", "ScanSetting", "cast_rays", "in_sight",
    "observed_by_cameras", "plan_camera_poses",
    "simulate_scans", "surface_cloud", "voxel_downsample", "Scene", "make_box_scene",
    "make_crossing_planes_scene", "make_primitive_gallery_scene", "sample_occupancy_queries",
]
