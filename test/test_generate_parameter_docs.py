"""config/reconstruct.yaml and the parameter table of docs/ros.md are generated from the settings: they
regenerate without a diff, and a stale copy is caught and rewritten."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml

from sa_convonet_ros.ros.settings import NODE_NAME, PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "generate_parameter_docs.py"


def load_script():
    spec = importlib.util.spec_from_file_location("generate_parameter_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_files_are_what_the_settings_generate():
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_the_params_file_holds_every_parameter_with_its_default_and_description():
    generator = load_script()
    values = yaml.safe_load(generator.params_file())[NODE_NAME]["ros__parameters"]
    assert values == {name: default for name, (default, _, _) in PARAMETERS.items()}
    assert all(type(values[name]) is type(default) for name, (default, _, _) in PARAMETERS.items())
    text = generator.params_file()
    assert "# Drop faces farther than this from every input point" in text and "marker_topic: ~/mesh_markers" in text


def test_a_stale_copy_is_reported_then_rewritten(tmp_path, monkeypatch, capsys):
    generator = load_script()
    params, docs = tmp_path / "reconstruct.yaml", tmp_path / "ros.md"
    params.write_text(generator.YAML_FILE.read_text().replace("auto_min_period: 30.0", "auto_min_period: 10.0"))
    docs.write_text(generator.DOCS_FILE.read_text().replace("| `threshold` |", "| `threshold_old` |"))
    monkeypatch.setattr(generator, "YAML_FILE", params)
    monkeypatch.setattr(generator, "DOCS_FILE", docs)
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    assert generator.main(["--check"]) == 1
    assert "reconstruct.yaml is out of date" in capsys.readouterr().err
    assert generator.main([]) == 0 and generator.main(["--check"]) == 0
    assert params.read_text() == generator.params_file()
    assert "| `threshold` |" in docs.read_text() and "threshold_old" not in docs.read_text()
