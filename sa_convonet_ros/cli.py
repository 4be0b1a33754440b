"""`sa-convonet`: reconstruct a mesh from a point-cloud file, or evaluate a mesh against ground truth.

    sa-convonet reconstruct INPUT -o MESH [--profile auto|fast|paper|feedforward] [--config YAML] [--png PREVIEW]
                            [--device auto|cpu|cuda] [--checkpoint PATH] [--iterations N] [--voxel-size M] ...
    sa-convonet reconstruct BAG --topic TOPIC [--all-messages [--merge-voxel M]] -o MESH ...
    sa-convonet reconstruct INPUT -o MESH --ray [ADDRESS] [--ray-workers N] [--ray-threads T] ...
    sa-convonet evaluate MESH GT [--tau 0.02 0.05] [--input CLOUD]
    sa-convonet preview MESH_OR_CLOUD -o PREVIEW.png [--view iso|front|back|left|right|top]

Every setting of the reconstruction has a flag (`sa-convonet reconstruct --help` lists them).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .config import PROFILE_HELP, ReconstructionConfig, get_profile
from .errors import SettingError
from .flags import add_flags, flag, given


def _load_config(args) -> ReconstructionConfig:
    """The profile, updated by the YAML file, then by the flags given."""
    config = get_profile(args.profile, device=args.device or "auto")
    if args.config:
        import yaml

        with open(args.config) as handle:
            values = yaml.safe_load(handle) or {}
        config = config.updated(**values)
    try:
        return config.updated(**given(args, ReconstructionConfig, skip=("profile",)))
    except SettingError as error:
        raise ValueError(error.describe(flag)) from None


class _ProgressBars:
    """One tqdm bar per stage, shown on stderr."""

    def __init__(self, enabled: bool):
        self.enabled, self.bars = enabled, {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="step" if stage == "optimize" else "it",
                                          leave=True, file=sys.stderr)
        bar.total = total
        bar.n = done
        bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _read_input(args, config: ReconstructionConfig):
    """The cloud of a point-cloud file, or of a topic of a rosbag2 recording (and what the bag gave)."""
    from .bags import is_bag, merge_voxel_size, pointcloud_topics, read_bag_cloud
    from .io import read_point_cloud

    if not is_bag(args.input):
        if args.topic is not None or args.all_messages or args.merge_voxel is not None:
            raise ValueError(f"{args.input}: --topic, --all-messages and --merge-voxel apply to rosbag2 input only")
        return read_point_cloud(args.input), None
    if args.topic is None:
        topics = pointcloud_topics(args.input)
        for topic, count in topics.items():
            print(f"{topic}\t{count} message{'s' if count != 1 else ''}")
        raise ValueError(f"{args.input}: name the map's topic with --topic (PointCloud2 topics listed above)"
                         if topics else f"{args.input}: the bag has no PointCloud2 topic")
    if args.merge_voxel is not None and not (args.all_messages and args.merge_voxel >= 0):
        raise ValueError("--merge-voxel must be >= 0 and goes with --all-messages, got "
                         f"{args.merge_voxel}{'' if args.all_messages else ' without it'}")
    voxel = merge_voxel_size(config.meshing.voxel_size) if args.merge_voxel is None else args.merge_voxel
    bag = read_bag_cloud(args.input, args.topic, all_messages=args.all_messages, merge_voxel=voxel)
    return bag.cloud, bag.summary()


def cmd_reconstruct(args) -> int:
    from .io import check_mesh_path, check_output_file, write_mesh
    from .pipeline import reconstruct
    from .points import farthest_coordinate

    config = _load_config(args)
    cloud, bag = _read_input(args, config)
    # The outputs are checked before the work, not found unwritable after it.
    check_mesh_path(args.output, max_abs_coordinate=farthest_coordinate(cloud.points))
    if args.png:
        check_output_file(args.png)
    bars = _ProgressBars(enabled=not args.quiet)
    try:
        result = reconstruct(cloud.points, config, colors=cloud.colors, progress=bars)
    finally:
        bars.close()
    written = write_mesh(result.mesh, args.output)
    if args.png:
        from .preview import render_mesh_png

        render_mesh_png(result.mesh, args.png, title=Path(args.output).name)
    stats = result.stats.as_dict()
    stats["output"] = str(written)
    if bag is not None:
        stats["bag"] = bag
    if args.png:
        stats["preview"] = str(args.png)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        _print_stats(stats)
    return 0


def _centimetres(metres: float) -> str:
    return "not measured" if metres != metres else f"{100 * metres:.2f} cm"


def _print_stats(stats: dict) -> None:
    print(f"mesh: {stats['vertices']} vertices, {stats['faces']} faces -> {stats['output']}")
    if "bag" in stats:
        bag = stats["bag"]
        print(f"bag: {bag['topic']} in frame {bag['frame_id']}, {bag['points']} points from {bag['messages']} "
              f"message{'s' if bag['messages'] != 1 else ''}")
    print(f"points: {stats['input_points']} in, {stats['points_used']} used "
          f"({stats['non_finite_removed']} non-finite removed, {stats['stray_points_removed']} stray dropped)")
    print(f"windows: {stats['windows_run']} run, {stats['windows_skipped']} skipped, {stats['windows_reused']} reused; "
          f"{stats['iterations']} iterations each; device {stats['device']}; profile {stats['profile']}")
    print(f"map: {_centimetres(stats['spacing'])} between points, noise {_centimetres(stats['noise'])}; "
          f"windows {stats['window_size']:.2f} m, mesh grid {_centimetres(stats['voxel_size'])}")
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in stats["seconds"].items())
    print(f"time: {stats['total_seconds']:.2f}s ({stages})")
    if "preview" in stats:
        print(f"preview: {stats['preview']}")


def cmd_evaluate(args) -> int:
    from .metrics import evaluate_mesh_files

    scores = evaluate_mesh_files(args.mesh, args.gt, taus=tuple(args.tau), input_path=args.input)
    if args.json:
        print(json.dumps(scores, indent=2, default=float))
        return 0
    for key, value in scores.items():
        if isinstance(value, (float, np.floating)):
            print(f"{key:>22}: {value:.5f}")
        else:
            print(f"{key:>22}: {value}")
    return 0


def cmd_preview(args) -> int:
    from .io import PointCloudData, check_output_file, read_mesh_or_cloud
    from .preview import PREVIEW_SIZE, render_mesh_png, render_side_by_side

    check_output_file(args.output)
    item = read_mesh_or_cloud(args.input)
    title = args.input.name
    if isinstance(item, PointCloudData):
        finite = item.finite_mask()
        cloud = PointCloudData(item.points[finite], None if item.colors is None else item.colors[finite])
        render_side_by_side([(title, cloud)], args.output, panel_size=PREVIEW_SIZE, view=args.view)
    else:
        render_mesh_png(item, args.output, size=PREVIEW_SIZE, view=args.view, title=title)
    kind = "points" if isinstance(item, PointCloudData) else "faces"
    count = len(item) if isinstance(item, PointCloudData) else len(item.faces)
    print(f"preview: {args.output} ({count} {kind}, view {args.view})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .preview import VIEWS

    parser = argparse.ArgumentParser(prog="sa-convonet", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    rec = commands.add_parser("reconstruct", help="reconstruct a mesh from a point cloud (PLY/PCD/XYZ/NPY) or a "
                                                  "rosbag2 recording (directory, .db3 or .mcap)",
                              epilog="A setting not given keeps the value of the profile (or of --config).")
    rec.add_argument("input", type=Path, help="point-cloud file, or rosbag2 directory / .db3 / .mcap file")
    bag = rec.add_argument_group("rosbag2 input")
    bag.add_argument("--topic", default=None, help="PointCloud2 topic of the map (without it: list the topics)")
    bag.add_argument("--all-messages", action="store_true",
                     help="merge every message of the topic (clouds already in one fixed frame, e.g. keyframes) "
                          "instead of taking the last one")
    bag.add_argument("--merge-voxel", type=float, default=None, metavar="M",
                     help="with --all-messages: keep the first point of each cube of M metres (default: half of "
                          "--voxel-size; 0 keeps every point)")
    # Paths to write stay text: Path() would drop a trailing slash, turning a folder into a file name.
    rec.add_argument("-o", "--output", required=True, help="mesh file (.ply, .obj, .glb, .off, .stl)")
    rec.add_argument("--profile", default="auto", help=PROFILE_HELP)
    rec.add_argument("--config", type=Path, default=None, help="YAML with optimization/windows/meshing overrides")
    rec.add_argument("--png", default=None, help="also write a PNG preview of the mesh")
    rec.add_argument("--json", action="store_true", help="print the statistics as JSON")
    rec.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_flags(rec, ReconstructionConfig, skip=("profile", "ray_address"))
    rec.add_argument("--ray", dest="ray_address", nargs="?", const="local", default=None, metavar="ADDRESS",
                     help="optimise the windows on Ray workers (pip install sa_convonet_ros[ray]): without ADDRESS "
                          "on a local Ray runtime, else on the Ray cluster at ADDRESS ('auto', HOST:6379, "
                          "ray://HOST:10001); see --ray-workers, --ray-threads")
    rec.set_defaults(run=cmd_reconstruct)

    ev = commands.add_parser("evaluate", help="Chamfer-L1, normal consistency and F-scores of a mesh")
    ev.add_argument("mesh", type=Path)
    ev.add_argument("gt", type=Path, help="ground truth: a mesh, or a point cloud with normals")
    ev.add_argument("--tau", type=float, nargs="+", default=[0.02, 0.05], help="F-score thresholds, metres")
    ev.add_argument("--input", type=Path, default=None,
                    help="the input cloud: completeness is then measured on the ground truth it saw")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(run=cmd_evaluate)

    pv = commands.add_parser("preview", help="render a mesh or a point-cloud file to a PNG, as --png does")
    pv.add_argument("input", type=Path, help="mesh (.ply/.obj/.off/.stl/.glb) or point cloud (.ply/.pcd/.xyz/.npy...)")
    pv.add_argument("-o", "--output", required=True, help="PNG file to write")
    pv.add_argument("--view", default="iso", choices=tuple(VIEWS), help="camera direction (default: iso, as --png)")
    pv.set_defaults(run=cmd_preview)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"sa-convonet: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
