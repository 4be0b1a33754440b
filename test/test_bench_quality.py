import json

import pytest

from bench.bench_quality import main


def _strict(text: str) -> dict:
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_json_records_every_method_on_every_scene_unrounded_and_appends(tmp_path):
    path = tmp_path / "figures.jsonl"
    argv = ["--world", "plain", "--scenes", "1", "--settings", "sparse", "--crop", "1.0",
            "--methods", "poisson", "bpa", "--json", str(path)]
    main(argv)
    records = [_strict(line) for line in path.read_text().splitlines()]
    assert [(r["world"], r["setting"], r["seed"], r["method"]) for r in records] == [
        ("plain", "sparse", 100_000, "poisson"), ("plain", "sparse", 100_000, "bpa")]
    for record in records:
        assert 0.0 < record["fscore@0.01"] <= 1.0 and record["chamfer_l1"] > 0 and record["seconds"] > 0
        assert record["observed_points"] == record["n_gt_evaluated"] > 0
        assert "hole_mask" not in record and "window_size" not in record  # the classical rows have no run
    main(argv)
    again = [_strict(line) for line in path.read_text().splitlines()]
    assert len(again) == 4 and again[3]["chamfer_l1"] == pytest.approx(records[1]["chamfer_l1"], rel=0.01)
