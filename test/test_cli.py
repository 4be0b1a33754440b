"""The `sa-convonet` command line: reconstruct a file, write a preview, evaluate against ground truth."""
import json
import sys

import numpy as np
import pytest
import torch
import trimesh

from sa_convonet_ros.cli import main
from sa_convonet_ros.config import ModelConfig
from sa_convonet_ros.io import write_point_cloud
from sa_convonet_ros.model import ConvONet, save_model
from sa_convonet_ros.synthetic import generate_room, simulate_scans


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    scene = generate_room(seed=5)
    points, _ = simulate_scans(scene, "sparse", seed=1)
    low = scene.bounds[0]
    points = points[np.all(points[:, :2] <= low[:2] + 1.5, axis=1)]
    cloud = write_point_cloud(points, folder / "corner.ply")
    torch.manual_seed(0)
    model = save_model(ConvONet(ModelConfig(c_dim=8, hidden_dim=16, grid_resolution=8, unet_levels=2,
                                            unet_base_channels=8)), folder / "tiny.pt")
    gt_points, gt_normals = scene.sample_surface(50000, seed=0)
    gt = folder / "gt.npz"
    np.savez(gt, points=gt_points, normals=gt_normals)
    return folder, cloud, model, gt


def test_reconstruct_writes_mesh_preview_and_stats(files, capsys):
    folder, cloud, model, _ = files
    mesh, png = folder / "out" / "mesh.ply", folder / "out" / "mesh.png"
    code = main(["reconstruct", str(cloud), "-o", str(mesh), "--checkpoint", str(model), "--iterations", "2",
                 "--voxel-size", "0.04", "--png", str(png), "--json", "-q"])
    assert code == 0
    stats = json.loads(capsys.readouterr().out)
    assert mesh.is_file() and png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stats["faces"] > 0 and stats["iterations"] == 2 and stats["output"] == str(mesh)


def test_reconstruct_reports_what_it_measured_on_the_map_and_chose(files, capsys):
    folder, cloud, model, _ = files
    code = main(["reconstruct", str(cloud), "-o", str(folder / "plain.ply"), "--checkpoint", str(model),
                 "--iterations", "1", "--voxel-size", "0.04", "-q"])
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("map: ")]
    # 2.78 cm between points: scale 1.25 of the 1.2 m window and the 4 cm grid
    assert len(lines) == 1 and "cm between points" in lines[0] and "windows 1.50 m, mesh grid 5.00 cm" in lines[0]


def test_evaluate_prints_metrics(files, capsys):
    folder, cloud, model, gt = files
    mesh = folder / "eval.ply"
    assert main(["reconstruct", str(cloud), "-o", str(mesh), "--checkpoint", str(model), "--iterations", "0",
                 "--voxel-size", "0.04", "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(mesh), str(gt), "--tau", "0.02", "0.05", "--input", str(cloud), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert {"chamfer_l1", "normal_consistency", "fscore@0.02", "fscore@0.05"} <= set(scores)
    assert 0 <= scores["fscore@0.05"] <= 1


def test_errors_are_reported_not_raised(files, capsys):
    folder, cloud, model, _ = files
    assert main(["reconstruct", str(folder / "missing.ply"), "-o", str(folder / "x.ply")]) == 2
    assert "missing.ply" in capsys.readouterr().err
    assert main(["reconstruct", str(cloud), "-o", str(folder / "x.ply"), "--profile", "nope"]) == 2
    assert "unknown profile" in capsys.readouterr().err
    assert main(["reconstruct", str(cloud), "-o", str(folder / "x.ply"), "--checkpoint", str(cloud)]) == 2
    assert "could not be read" in capsys.readouterr().err


def test_any_setting_can_be_given_and_a_bad_one_is_named_by_its_flag(files, capsys):
    folder, cloud, model, _ = files
    common = ["reconstruct", str(cloud), "-o", str(folder / "flags.ply"), "--checkpoint", str(model), "-q", "--json"]
    assert main(common + ["--iterations", "1", "--window-batch", "3", "--voxel-size", "0.04",
                          "--trim-distance", "0", "--no-color-from-input"]) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == 1
    assert main(common + ["--voxel-size", "-1"]) == 2
    assert "--voxel-size must be in [0.001, 10], got -1.0" in capsys.readouterr().err
    assert main(common + ["--voxel-size", "0.002"]) == 2  # a 1.2 m window of 600^3 grid points
    assert "--voxel-size must be at least --window-size / 256" in capsys.readouterr().err
    assert main(common + ["--iterations", "4000000000"]) == 2  # bounded like the node's requests
    assert "--iterations must be in [0, 1,000,000], got 4000000000" in capsys.readouterr().err
    assert main(common + ["--margin", "2.0"]) == 2
    assert "--margin must be smaller than --window-size, got 2.0" in capsys.readouterr().err


@pytest.mark.parametrize("output, phrase", [
    ("/proc/sa_convonet/mesh.ply", "could not write /proc/sa_convonet/mesh.ply"),
    ("{folder}/out.ply/", "names a directory"),
    ("{folder}/mesh.xyz", "unsupported mesh extension"),
])
def test_unwritable_output_fails_before_the_reconstruction(files, capsys, monkeypatch, output, phrase):
    folder, cloud, model, _ = files

    def must_not_run(*args, **kwargs):
        raise AssertionError("the reconstruction ran before the output path was checked")

    monkeypatch.setattr("sa_convonet_ros.pipeline.reconstruct", must_not_run)
    output = output.format(folder=folder)
    assert main(["reconstruct", str(cloud), "-o", output, "--checkpoint", str(model), "-q"]) == 2
    error = capsys.readouterr().err
    assert "sa-convonet: error: could not write" in error and phrase in error, error
    assert main(["reconstruct", str(cloud), "-o", str(folder / "fine.ply"), "--png", "/proc/x/p.png", "-q"]) == 2
    assert "could not write /proc/x/p.png" in capsys.readouterr().err
    assert not (folder / "out.ply").exists() and not (folder / "fine.ply").exists()


def test_evaluate_names_an_unreadable_mesh_file(files, capsys):
    folder, _, _, gt = files
    empty = folder / "empty_file.ply"
    empty.write_bytes(b"")
    assert main(["evaluate", str(empty), str(gt)]) == 2
    error = capsys.readouterr().err
    assert str(empty) in error and "cannot read the mesh" in error, error


def test_ray_without_ray_installed_is_one_line_and_exit_2(files, capsys, monkeypatch):
    folder, cloud, model, _ = files
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["reconstruct", str(cloud), "-o", str(folder / "ray.ply"), "--checkpoint", str(model), "--ray",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Ray is not installed: pip install 'sa_convonet_ros[ray]'" in err


def test_ray_flag_takes_an_optional_address():
    from sa_convonet_ros.cli import build_parser

    def parsed(*extra):
        return build_parser().parse_args(["reconstruct", "in.ply", "-o", "out.ply", *extra])

    assert parsed("--ray").ray_address == "local" and parsed().ray_address is None
    assert parsed("--ray", "head:6379", "--ray-workers", "4").ray_address == "head:6379"


def _damaged_inputs(folder) -> dict:
    """name -> a damaged input file, made from the good cloud `corner.ply` (a binary PLY)."""
    whole = (folder / "corner.ply").read_bytes()
    np.save(folder / "corner.npy", np.zeros((100, 3)))
    pcd = ("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 10\nHEIGHT 1\nPOINTS 10\n"
           "DATA ascii\n" + "0 0 0\n" * 4)
    damaged = {"half.ply": whole[:len(whole) // 2], "short.ply": whole[:-7], "garbage.ply": bytes(range(256)) * 4,
               "short.npy": (folder / "corner.npy").read_bytes()[:-7], "more_points.pcd": pcd.encode()}
    for name, content in damaged.items():
        (folder / name).write_bytes(content)
    return {name: folder / name for name in damaged}


def _assert_one_error_line(out: str, err: str, naming: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sa-convonet: error: ") and naming in lines[0], err
    assert out == "" and "RPly" not in err and "Open3D" not in err, (out, err)


@pytest.mark.parametrize("name, says", [("half.ply", "truncated"), ("short.ply", "truncated"),
                                        ("garbage.ply", "not a PLY file"), ("short.npy", "truncated"),
                                        ("more_points.pcd", "truncated")])
def test_a_damaged_input_is_one_error_line_with_nothing_from_open3d(files, capfd, name, says):
    folder, _, model, _ = files
    path = _damaged_inputs(folder)[name]
    assert main(["reconstruct", str(path), "-o", str(folder / "damaged.ply"), "--checkpoint", str(model), "-q"]) == 2
    _assert_one_error_line(*capfd.readouterr(), naming=f"{path}: {says}")
    assert not (folder / "damaged.ply").exists()


def test_the_command_refuses_damaged_inputs_in_one_line_and_exit_code_2(files):
    """As a process of its own, as a user runs it: what Open3D and RPly would print goes nowhere."""
    import subprocess
    from pathlib import Path

    folder = files[0]
    inputs = _damaged_inputs(folder)
    runs = {name: subprocess.Popen([sys.executable, "-m", "sa_convonet_ros.cli", "reconstruct", str(inputs[name]),
                                    "-o", str(folder / f"from_{name}.ply")], cwd=Path(__file__).resolve().parents[1],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in ("half.ply", "garbage.ply")}
    for name, run in runs.items():
        out, err = run.communicate(timeout=120)
        assert run.returncode == 2, (name, err)
        _assert_one_error_line(out, err, naming=str(inputs[name]))


@pytest.mark.parametrize("name, says", [
    ("m" * 300 + ".ply", "File name too long"),
    ("mesh\nname.ply", "the name holds a control character (newline)"),
    ("mesh\tname.ply", "the name holds a control character (tab)"),
])
def test_an_output_name_the_system_or_a_terminal_would_garble_fails_before_the_reconstruction(files, capsys, name,
                                                                                             says):
    folder, cloud, model, _ = files
    assert main(["reconstruct", str(cloud), "-o", str(folder / name), "--checkpoint", str(model), "-q"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("sa-convonet: error: could not write ") and err.count("\n") == 1 and says in err, err
    assert out == "" and len(err) < 200


def test_preview_renders_a_mesh_file_or_a_cloud_file(files, capsys, tmp_path):
    from PIL import Image

    folder, cloud, _, _ = files
    sphere = trimesh.creation.icosphere(subdivisions=2)
    sphere.export(tmp_path / "sphere.obj")
    assert main(["preview", str(tmp_path / "sphere.obj"), "-o", str(tmp_path / "mesh.png")]) == 0
    assert main(["preview", str(cloud), "-o", str(tmp_path / "cloud.png"), "--view", "top"]) == 0
    printed = capsys.readouterr().out
    assert f"({len(sphere.faces)} faces, view iso)" in printed and "points, view top)" in printed
    for name in ("mesh.png", "cloud.png"):
        image = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        assert image.shape == (768, 1024, 3) and (image < 200).any()  # something drawn on the white
    trimesh.Trimesh(vertices=sphere.vertices).export(tmp_path / "points_only.obj")
    assert main(["preview", str(tmp_path / "points_only.obj"), "-o", str(tmp_path / "x.png")]) == 2
    assert "the mesh has no faces" in capsys.readouterr().err
    assert main(["preview", str(tmp_path / "missing.ply"), "-o", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()
