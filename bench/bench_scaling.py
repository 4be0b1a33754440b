"""Scaling benchmarks: peak memory and time on generated multi-room floors; time against occupied windows.

    python -m bench.bench_scaling --sizes 8x7 10x7 12x8 --profiles feedforward fast:2 --setting sparse --seed 0
    python -m bench.bench_scaling points --size 30x20 --setting dense --seed 0
    python -m bench.bench_scaling windows --sizes 3x3 6x5 10x8 --setting sparse --max-points 150000 --seed 0
    python -m bench.bench_scaling ray --size 8x7 --setting sparse --profile auto:cpu --workers 2 --seed 0
    python -m bench.bench_scaling mesh floor.ply --max-faces 1000000 --open3d

Floors (the default): generates floors of the given sizes (`data.floors`: rooms along a corridor),
scans each with the simulated depth camera and reconstructs it once per profile (`NAME` or `NAME:ITERATIONS`),
each run in a fresh process so that its peak RSS is its own. The run reads the cloud from a .npy like the
CLI, calls `reconstruct` and writes the mesh. Its peak RSS is split into three phases by the progress
reports, the kernel's high-water mark being reset between them: *prepare* (reading, denoising, planning
the windows), *windows* (batches run, their blocks meshed and released) and *mesh* (the
mesh assembled, trimmed, coloured, written). Prints a Markdown table and the memory model's figures: bytes
per input point (prepare), per output face (mesh, over what the windows phase started with) and the most
field blocks held at once.

Points (`points`): the part of the memory that follows the input, at building scale without running the
network: one floor scanned, then `prepare_points` (denoising) and `plan_windows` with the `fast`
profile; prints their peak and what stays held, per input point.

Mesh (`mesh`): what is done with a finished mesh, each step's peak RSS above its start and seconds: the
simplification for the node's messages and previews (`meshing.simplified`, and with `--open3d` Open3D's
vertex clustering and quadric decimation to the same budget for comparison), a PNG preview (and one of
the whole mesh, without the preview's simplification), and, in the
ROS 2 environment, the node's messages (markers and shape_msgs/Mesh, built and serialised) of the
simplified mesh.

Windows (`windows`): generates closed rooms of the given floor sizes (metres, all --height tall), simulates
depth scans and keeps at most --max-points of them (`subsample_evenly`). A fourth, *sparse corridor* map
keeps only an L-shaped strip (--strip metres wide, along two walls) of the largest room's scan: its bounding
box is the largest room's, its surface a fraction of it. Each map is reconstructed once with the `fast`
profile after one warm-up run. Prints a Markdown table, a least-squares fit seconds = a + b * windows over
the rooms, and how the corridor's time compares with the fit and with its same-bounding-box room.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sa_convonet_ros.config import get_profile
from sa_convonet_ros.devices import resolve_device
from sa_convonet_ros.model import load_model
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.planning import plan_windows
from sa_convonet_ros.points import prepare_points, subsample_evenly
from sa_convonet_ros.synthetic import RoomConfig, generate_floor, generate_room, scan_floor, simulate_scans


def parse_size(text: str) -> tuple[float, float]:
    length, width = (float(v) for v in text.lower().split("x"))
    return length, width


def scan_room(length, width, height, setting, seed, max_points):
    # No missing walls, so that the rooms differ only in size (the generator opens some rooms at random).
    config = RoomConfig.of_size(length, width, height, open_probability=0.0)
    points, _ = simulate_scans(generate_room(seed, config), setting, seed=seed)
    points = points.astype(np.float64)
    return points[subsample_evenly(points, max_points)] if len(points) > max_points else points


def l_strip(points, width):
    """The points within `width` of the low-x or the low-y side: same bounding box, far fewer windows."""
    low = points.min(axis=0)
    return points[(points[:, 0] < low[0] + width) | (points[:, 1] < low[1] + width)]


def fit_line(x, y):
    """Least squares y = a + b x, and R^2."""
    b, a = np.polyfit(x, y, 1)
    residual = np.sum((y - (a + b * x)) ** 2)
    total = np.sum((y - np.mean(y)) ** 2)
    return a, b, 1.0 - residual / total if total > 0 else float("nan")


def windows_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_scaling windows", description="time against occupied windows")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(3.0, 3.0), (6.0, 5.0), (10.0, 8.0)],
                        help="room floor sizes LENGTHxWIDTH in metres, e.g. 3x3 6x5 10x8")
    parser.add_argument("--height", type=float, default=2.5)
    parser.add_argument("--strip", type=float, default=1.5, help="width (m) of the corridor's L-shaped strip")
    parser.add_argument("--setting", default="sparse", choices=["dense", "sparse"])
    parser.add_argument("--max-points", type=int, default=150_000)
    parser.add_argument("--iterations", type=int, default=None, help="override the fast profile's iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if len(args.sizes) < 2:
        parser.error("--sizes needs at least two rooms to fit a line")

    maps = []  # (name, points)
    for length, width in sorted(args.sizes, key=lambda s: s[0] * s[1]):
        start = time.perf_counter()
        maps.append((f"room {length:g} x {width:g} m", scan_room(length, width, args.height, args.setting,
                                                                 args.seed, args.max_points)))
        print(f"[scan] {maps[-1][0]}: {len(maps[-1][1])} points, {time.perf_counter() - start:.1f}s",
              file=sys.stderr, flush=True)
    maps.append((f"corridor: {args.strip:g} m L-strip of the largest room", l_strip(maps[-1][1], args.strip)))

    device = resolve_device(args.device)
    config = get_profile("fast").updated(device=str(device))
    model = load_model(config.checkpoint, device=device)
    # Warm-up on a 1.5 m corner of the smallest map: allocator, kernels and lazy imports are paid here.
    small = maps[0][1]
    corner = small[np.all(small[:, :2] < small[:, :2].min(axis=0) + 1.5, axis=1)]
    reconstruct(corner, config, model=model, iterations=min(5, config.optimization.iterations))

    rows = []
    for name, points in maps:
        stats = reconstruct(points, config, model=model, iterations=args.iterations).stats
        volume = float(np.prod(points.max(axis=0) - points.min(axis=0)))
        rows.append((name, len(points), volume, stats))
        print(f"[run] {name}: {stats.windows_run} windows, {stats.total_seconds:.1f}s", file=sys.stderr, flush=True)

    stats0 = rows[0][3]
    print(f"## Time against occupied windows: {args.setting} scans, seed {args.seed}, profile `fast`, "
          f"{stats0.iterations} iterations\n")
    print(f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device `{stats0.device}`" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"- windows: {config.windows.window_size:g} m cores, batches of {config.optimization.window_batch}\n")
    print("| map | points | bbox (m^3) | windows run | windows skipped | total (s) | optimize (s) | s / window |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, volume, s in rows:
        print(f"| {name} | {n} | {volume:.1f} | {s.windows_run} | {s.windows_skipped} | {s.total_seconds:.1f} | "
              f"{s.seconds.get('optimize', 0.0):.1f} | {s.total_seconds / max(1, s.windows_run):.3f} |")

    # Fit on the rooms only; the corridor is the out-of-sample check.
    rooms, corridor = rows[:-1], rows[-1]
    windows = np.array([r[3].windows_run for r in rooms], dtype=float)
    seconds = np.array([r[3].total_seconds for r in rooms])
    a, b, r2 = fit_line(windows, seconds)
    predict = lambda w: a + b * w  # noqa: E731
    same_bbox = rooms[-1]
    measured = corridor[3].total_seconds
    print(f"\nFit over the {len(rooms)} rooms: total seconds = {a:.2f} + {b:.4f} * windows (R^2 = {r2:.4f})\n")
    print(f"- corridor: {measured:.1f}s measured, {predict(corridor[3].windows_run):.1f}s predicted from its "
          f"{corridor[3].windows_run} windows (ratio {measured / predict(corridor[3].windows_run):.2f})")
    print(f"- corridor / fit at its bbox-equivalent room ({same_bbox[0]}, {same_bbox[3].windows_run} windows, "
          f"{predict(same_bbox[3].windows_run):.1f}s): {measured / predict(same_bbox[3].windows_run):.2f}; "
          f"bbox volumes {corridor[2]:.1f} vs {same_bbox[2]:.1f} m^3")
    return 0


# ------------------------------------------------------------------------------------------------ floors

MB = 1 << 20


def kernel_kb(field: str) -> int:
    """A value of /proc/self/status in kB (VmRSS: now, VmHWM: the peak since the last reset)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


class PhasePeaks:
    """Peak RSS per phase of one process: the kernel's high-water mark, reset when a phase starts."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}
        self.current: str | None = None

    def start(self, name: str) -> None:
        self.stop()
        # freed heap the allocator kept would hide the next phase's allocations: give it back first
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as control:  # "5" resets the peak RSS to the current RSS
            control.write("5")
        self.current = name
        self.phases[name] = {"start_mb": kernel_kb("VmRSS") / 1024}

    def stop(self) -> None:
        if self.current is not None:
            self.phases[self.current]["peak_mb"] = kernel_kb("VmHWM") / 1024
            self.current = None


def run_one(cloud_path: str, profile: str, mesh_path: str) -> dict:
    """One reconstruction in this process, as the CLI does it; its figures and phase peaks."""
    from sa_convonet_ros.io import read_point_cloud, write_mesh

    name, _, iterations = profile.partition(":")
    config = get_profile(name, device="cpu").updated(device="cpu")
    if iterations:
        config = config.updated(optimization={"iterations": int(iterations)})
    model = load_model(config.checkpoint, device=torch.device("cpu"))  # imports and the model: the base
    base_mb = kernel_kb("VmRSS") / 1024
    peaks = PhasePeaks()
    peaks.start("prepare")
    cloud = read_point_cloud(cloud_path)

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "windows":
            peaks.start("windows")
        elif stage == "mesh" and done == 0:
            peaks.start("mesh")

    result = reconstruct(cloud.points, config, colors=cloud.colors, model=model, progress=progress)
    write_mesh(result.mesh, mesh_path)
    peaks.stop()
    stats = result.stats
    return {"profile": profile, "points": stats.input_points, "windows": stats.windows_run,
            "peak_blocks": stats.peak_field_blocks, "faces": stats.faces, "faces_marched": stats.faces_marched,
            "seconds": stats.total_seconds,
            "block_mb": 4 * (round(config.windows.window_size / config.meshing.voxel_size)) ** 3 / MB,
            "base_mb": base_mb, "phases": peaks.phases}


def measured_in_fresh_process(cloud_path: Path, profile: str) -> dict:
    output = subprocess.run([sys.executable, "-m", "bench.bench_scaling", "run-one", str(cloud_path), profile,
                             str(cloud_path.with_suffix(".ply"))], check=True, capture_output=True, text=True)
    return json.loads(output.stdout)


def floors_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_scaling", description="peak memory on generated floors")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(8.0, 7.0), (10.0, 7.0), (12.0, 8.0)],
                        help="floor sizes LENGTHxWIDTH in metres (width >= 7: two rows of rooms and a corridor)")
    parser.add_argument("--profiles", nargs="+", default=["feedforward", "fast:2"],
                        help="profiles as NAME or NAME:ITERATIONS")
    parser.add_argument("--setting", default="sparse", choices=["dense", "sparse"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for length, width in args.sizes:
            cloud_path = Path(folder) / f"floor_{length:g}x{width:g}.npy"
            points, _ = scan_floor(generate_floor(args.seed, (length, width)), args.setting, seed=args.seed)
            np.save(cloud_path, points)
            for profile in args.profiles:
                rows.append((f"{length:g} x {width:g} m", measured_in_fresh_process(cloud_path, profile)))
                print(f"[run] {rows[-1][0]} {profile}: {rows[-1][1]['seconds']:.0f}s", file=sys.stderr, flush=True)
    print_floor_table(rows, args)
    return 0


def print_floor_table(rows: list[tuple[str, dict]], args) -> None:
    print(f"## Peak memory on generated floors: {args.setting} scans, seed {args.seed}\n")
    print(f"- machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CPU")
    print(f"- base (imports and the model, before the cloud is read): {rows[0][1]['base_mb']:.0f} MB; "
          f"a field block: {rows[0][1]['block_mb']:.2f} MB\n")
    print("| floor | profile | points | windows | blocks held (most) | faces marched / kept | seconds | "
          "peak RSS (MB) | prepare / windows / mesh peak above base (MB) | B / point | B / kept face |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for name, run in rows:
        phases, base = run["phases"], run["base_mb"]
        peak = max(phase["peak_mb"] for phase in phases.values())
        above = " / ".join(f"{phases[p]['peak_mb'] - base:.0f}" for p in ("prepare", "windows", "mesh"))
        per_point = (phases["prepare"]["peak_mb"] - base) * MB / run["points"]
        # what the kept faces, their assembly and finishing add to what the windows phase started with
        per_face = (phases["mesh"]["peak_mb"] - phases["windows"]["start_mb"]) * MB / max(run["faces"], 1)
        print(f"| {name} | {run['profile']} | {run['points']} | {run['windows']} | {run['peak_blocks']} | "
              f"{run['faces_marched']} / {run['faces']} | {run['seconds']:.0f} | {peak:.0f} | {above} | "
              f"{per_point:.0f} | {per_face:.0f} |")
    print("\n```json")
    print(json.dumps([run for _, run in rows]))
    print("```")


def points_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_scaling points", description="memory per input point")
    parser.add_argument("--size", type=parse_size, default=(30.0, 20.0))
    parser.add_argument("--setting", default="dense", choices=["dense", "sparse"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    points, _ = scan_floor(generate_floor(args.seed, args.size), args.setting, seed=args.seed)
    points = points.astype(np.float64)  # what the readers hand over
    config = get_profile("fast")
    peaks = PhasePeaks()
    peaks.start("points")
    start = time.perf_counter()
    cloud = prepare_points(points, config)
    plan = plan_windows(cloud.points, config, config.optimization.iterations)
    seconds = time.perf_counter() - start
    peaks.stop()
    phase, held_mb = peaks.phases["points"], kernel_kb("VmRSS") / 1024
    n = len(points)
    print(f"## Memory per input point: {args.size[0]:g} x {args.size[1]:g} m floor, {args.setting} scan, "
          f"seed {args.seed}, profile `{config.profile}`\n")
    print("| points | windows | prepare + plan (s) | peak above the input (MB) | B / point at the peak | "
          "held after (MB) | B / point held |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {n} | {len(plan.windows)} | {seconds:.0f} | {phase['peak_mb'] - phase['start_mb']:.0f} | "
          f"{(phase['peak_mb'] - phase['start_mb']) * MB / n:.0f} | {held_mb - phase['start_mb']:.0f} | "
          f"{(held_mb - phase['start_mb']) * MB / n:.0f} |")
    return 0


# --------------------------------------------------------------------------------------------------- ray

def ray_main(argv=None) -> int:
    """One floor reconstructed in this process, then by Ray workers on a local runtime (started, then
    kept up: a second run): times, the ratio, the bytes per window in and out, and whether the meshes are
    the same."""
    parser = argparse.ArgumentParser(prog="bench.bench_scaling ray",
                                     description="one process against local Ray workers")
    parser.add_argument("--size", type=parse_size, default=(8.0, 7.0))
    parser.add_argument("--setting", default="sparse", choices=["dense", "sparse"])
    parser.add_argument("--profile", default="auto:cpu", help="NAME or NAME:ITERATIONS")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and CPUs) per worker")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import ray

    from sa_convonet_ros.ray_runner import release_workers

    name, _, iterations = args.profile.partition(":")
    if name == "auto":  # auto:cpu / auto:gpu are whole names
        name, iterations = args.profile, ""
    config = get_profile(name, device="cpu").updated(device="cpu")
    if iterations:
        config = config.updated(optimization={"iterations": int(iterations)})
    points, _ = scan_floor(generate_floor(args.seed, args.size), args.setting, seed=args.seed)
    points = points.astype(np.float64)
    model = load_model(config.checkpoint, device=torch.device("cpu"))
    corner = points[np.all(points[:, :2] < points[:, :2].min(axis=0) + 1.5, axis=1)]
    reconstruct(corner, config, model=model, iterations=2)  # warm-up: allocator, kernels, lazy imports

    runs = {"one process": reconstruct(points, config, model=model)}
    print(f"[run] one process: {runs['one process'].stats.total_seconds:.0f}s", file=sys.stderr, flush=True)
    ray.init(num_cpus=args.workers * args.threads, include_dashboard=False, logging_level="warning")
    on_ray = config.updated(ray_address="local", ray_workers=args.workers, ray_threads=args.threads)
    for label in ("Ray, workers started", "Ray, workers kept up"):
        start = time.perf_counter()
        runs[label] = reconstruct(points, on_ray, model=model)
        runs[label].stats.seconds["wall"] = time.perf_counter() - start
        print(f"[run] {label}: {runs[label].stats.seconds['wall']:.0f}s", file=sys.stderr, flush=True)
    release_workers()
    ray.shutdown()

    alone = runs["one process"]
    same = all(np.array_equal(r.mesh.vertices, alone.mesh.vertices) and np.array_equal(r.mesh.faces, alone.mesh.faces)
               for r in runs.values())
    windows = alone.stats.windows_run
    print(f"## One process against {args.workers} local Ray workers: {args.size[0]:g} x {args.size[1]:g} m floor, "
          f"{args.setting} scan, seed {args.seed}, profile `{alone.stats.profile}`\n")
    print(f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; one process: "
          f"{torch.get_num_threads()} torch threads; Ray {ray.__version__}: {args.workers} worker(s) x "
          f"{args.threads} thread(s)")
    print(f"- {len(points)} points, {windows} windows in {alone.stats.batches_run} batches of "
          f"{config.optimization.window_batch}, {alone.stats.iterations} steps; "
          f"a {alone.stats.voxel_size:g} m grid; "
          f"the meshes are {'identical' if same else 'DIFFERENT'} ({len(alone.mesh.faces)} faces)\n")
    print("| run | total (s) | optimize (s) | marching cubes (s) | ratio to one process | worker s / window | "
          "first result (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, result in runs.items():
        s, traffic = result.stats, result.stats.distributed
        per_window = f"{traffic['worker_seconds'] / windows:.2f}" if traffic else "—"
        first = f"{traffic['seconds_to_first_result']:.1f}" if traffic else "—"
        total = s.total_seconds - s.seconds.get("wall", 0.0)
        print(f"| {label} | {total:.0f} | {s.seconds['optimize']:.0f} | {s.seconds['marching_cubes']:.1f} | "
              f"{alone.stats.total_seconds / total:.2f}x | {per_window} | {first} |")
    traffic = runs["Ray, workers kept up"].stats.distributed
    driver = alone.stats.total_seconds - alone.stats.seconds["optimize"] - alone.stats.seconds["field"]
    print(f"\nPer window, through Ray's object store: in {traffic['bytes_in'] / windows / 1e3:.0f} kB (its crop's "
          f"points, float64, and indices), out {traffic['bytes_out'] / windows / 1e3:.0f} kB (the band's float32 "
          f"logits and a bit mask) instead of {traffic['bytes_out_dense'] / windows / 1e3:.0f} kB for the whole "
          f"block; one process: {alone.stats.total_seconds / windows:.2f} s per window, of which on the driver "
          f"(prepare, plan, marching cubes, trim): "
          f"{driver / windows:.3f} s")
    print("\n```json")
    print(json.dumps({label: {"seconds": r.stats.seconds, "distributed": r.stats.distributed,
                              "windows": r.stats.windows_run, "faces": r.stats.faces} for label, r in runs.items()}))
    print("```")
    return 0 if same else 1


def mesh_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_scaling mesh",
                                     description="memory and time of what is done with a finished mesh")
    parser.add_argument("mesh", help="a mesh file, e.g. one the CLI wrote")
    parser.add_argument("--max-faces", type=int, default=1_000_000, help="the simplification's face budget")
    parser.add_argument("--open3d", action="store_true",
                        help="also Open3D's vertex clustering and quadric decimation to the same budget")
    args = parser.parse_args(argv)
    import trimesh

    from sa_convonet_ros.meshing import simplified
    from sa_convonet_ros.preview import render_mesh_png

    mesh = trimesh.load(args.mesh, process=False)
    steps = {"simplified (meshing.simplified)": lambda: simplified(mesh, args.max_faces),
             "PNG preview (render_mesh_png)": lambda: render_mesh_png(mesh, Path(args.mesh).with_suffix(".bench.png")),
             "PNG preview of the whole mesh, not simplified": lambda: _whole_mesh_preview(mesh, args.mesh)}
    if args.open3d:
        steps.update(_open3d_steps(mesh, args.max_faces))
    small = simplified(mesh, args.max_faces)
    with contextlib.suppress(ImportError):  # the messages need the ROS 2 environment (scripts/ros_env.sh)
        steps.update(_message_steps(small))
    print(f"## What is done with a mesh of {len(mesh.faces)} faces ({args.mesh})\n")
    print(f"Simplified to at most {args.max_faces} faces: {len(small.faces)}.\n")
    print("| step | seconds | peak above its start (MB) | B / face of the mesh given |")
    print("|---|---:|---:|---:|")
    for name, (step, faces) in ((n, _with_faces(f, mesh, small)) for n, f in steps.items()):
        peaks = PhasePeaks()
        peaks.start(name)
        started = time.perf_counter()
        kept = step()
        seconds = time.perf_counter() - started
        peaks.stop()
        del kept
        above = peaks.phases[name]["peak_mb"] - peaks.phases[name]["start_mb"]
        print(f"| {name} | {seconds:.1f} | {above:.0f} | {above * MB / faces:.0f} |")
    return 0


def _whole_mesh_preview(mesh, path: str):
    from sa_convonet_ros import preview

    budget, preview.PREVIEW_MAX_FACES = preview.PREVIEW_MAX_FACES, 0  # 0: no limit
    try:
        return preview.render_mesh_png(mesh, Path(path).with_suffix(".bench.png"))
    finally:
        preview.PREVIEW_MAX_FACES = budget


def _with_faces(step, mesh, small):
    """(the step, the faces of the mesh it works on): message steps work on the simplified mesh."""
    return (step, len(small.faces)) if getattr(step, "on_simplified", False) else (step, len(mesh.faces))


def _open3d_steps(mesh, max_faces: int) -> dict:
    import open3d as o3d

    def as_open3d():
        return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(mesh.vertices)),
                                         o3d.utility.Vector3iVector(np.asarray(mesh.faces, dtype=np.int32)))

    cell = float(np.median(mesh.edges_unique_length)) * np.sqrt(len(mesh.faces) / max_faces)
    return {f"Open3D: the mesh copied in, vertex clustering at {100 * cell:.2f} cm":
            lambda: as_open3d().simplify_vertex_clustering(voxel_size=cell),
            "Open3D: the mesh copied in, quadric decimation": lambda: as_open3d().simplify_quadric_decimation(
                target_number_of_triangles=max_faces)}


def _message_steps(small) -> dict:
    from rclpy.serialization import serialize_message

    from sa_convonet_ros.ros.marker_blocks import MarkerBlocks
    from sa_convonet_ros.ros.markers import height_colors, mesh_to_shape_msg
    from sa_convonet_ros.ros.serialized import mesh_geometry_stamped, mesh_vertex_colors_stamped

    colors = np.asarray(small.visual.vertex_colors)[:, :3] / 255.0 if small.visual.kind == "vertex" else None

    def markers():  # as the node sends a whole mesh: blocks of half its 1.2 m windows
        rgb = colors if colors is not None else height_colors(small.vertices[:, 2])
        return MarkerBlocks().update(small.vertices, small.faces, rgb, "map", 0.6, 200_000).markers.serialized()

    def shape():  # the service's response
        return serialize_message(mesh_to_shape_msg(small.vertices, small.faces))

    def mesh_msgs():
        rgba = np.ones((len(small.vertices), 4), dtype=np.float32)
        rgba[:, :3] = colors if colors is not None else 0.7
        return (mesh_geometry_stamped(small.vertices, small.vertex_normals, small.faces, "map", "bench"),
                mesh_vertex_colors_stamped(rgba, "map", "bench"))

    markers.on_simplified = shape.on_simplified = mesh_msgs.on_simplified = True
    return {"RViz markers of the simplified mesh, serialised": markers,
            "shape_msgs/Mesh of the simplified mesh, serialised": shape,
            "mesh_msgs of the simplified mesh (geometry with normals, vertex colours), serialised with numpy":
            mesh_msgs}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mesh"]:
        return mesh_main(argv[1:])
    if argv[:1] == ["points"]:
        return points_main(argv[1:])
    if argv[:1] == ["windows"]:
        return windows_main(argv[1:])
    if argv[:1] == ["ray"]:
        return ray_main(argv[1:])
    if argv[:1] == ["run-one"]:
        print(json.dumps(run_one(*argv[1:4])))
        return 0
    return floors_main(argv)


if __name__ == "__main__":
    sys.exit(main())
