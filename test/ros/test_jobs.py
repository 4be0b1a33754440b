"""A job's cancel-or-commit decision, its staged output files and its progress reports."""
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import trimesh

from sa_convonet_ros.ros.jobs import UINT32_MAX, Job, ProgressReporter
from sa_convonet_ros.ros.outputs import OutputError, StagedFiles
from sa_convonet_ros.ros.pointcloud2 import CloudArrays


def _job(**fields):
    return Job(cloud=CloudArrays(np.zeros((1, 3)), None, 'map'), source='a test cloud', **fields)


def test_a_cancelled_job_cannot_commit():
    job = _job()
    assert job.request_cancel() and job.cancel.is_set()
    assert not job.commit() and not job.committed


def test_a_committed_job_cannot_be_cancelled():
    job = _job()
    assert job.commit() and job.committed
    assert not job.request_cancel() and not job.cancel.is_set()


def test_cancel_and_commit_racing_agree_on_one_outcome():
    def race(job):
        results = {}
        threads = [threading.Thread(target=lambda: results.update(cancel=job.request_cancel())),
                   threading.Thread(target=lambda: results.update(commit=job.commit()))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    for _ in range(200):
        results = race(_job())
        assert results['cancel'] != results['commit']


def test_the_deadline_counts_from_the_start_of_the_job():
    job = _job(max_seconds=None)
    assert job.deadline(0.0) is None and job.deadline(5.0) == pytest.approx(job.started + 5.0)
    assert _job(max_seconds=0.0).deadline(5.0) is None  # 0 in the request: no budget
    timed = _job(max_seconds=2.5)
    assert timed.deadline(5.0) == pytest.approx(timed.started + 2.5)


def test_staged_files_appear_only_when_moved_into_place(tmp_path):
    mesh = trimesh.creation.icosphere(subdivisions=1)
    path, preview = tmp_path / 'out' / 'mesh.ply', tmp_path / 'out' / 'mesh.png'
    staged = StagedFiles.write(mesh, path, preview)
    assert not path.exists() and not preview.exists()
    assert len(list((tmp_path / 'out').iterdir())) == 2  # hidden, beside their final names
    staged.move_into_place()
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['mesh.ply', 'mesh.png']
    assert len(trimesh.load(path, force='mesh').faces) == len(mesh.faces)

    discarded = StagedFiles.write(mesh, tmp_path / 'other.glb', None)
    discarded.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']


def test_a_failed_write_names_the_final_file_and_leaves_nothing(tmp_path):
    with pytest.raises(OutputError, match=r'could not write .*mesh\.png: cannot render an empty mesh'):
        StagedFiles.write(trimesh.Trimesh(), tmp_path / 'mesh.ply', tmp_path / 'mesh.png')
    assert list(tmp_path.iterdir()) == []


class _Node:
    """What the progress reporter uses of the node."""

    def __init__(self):
        self.context = SimpleNamespace(ok=lambda: True)
        self.logged = []

    def get_logger(self):
        return SimpleNamespace(info=self.logged.append)

    def get_clock(self):
        return SimpleNamespace(now=lambda: SimpleNamespace(to_msg=lambda: _stamp()))


def _stamp():
    from builtin_interfaces.msg import Time
    return Time(sec=int(time.time()))


def test_progress_counts_beyond_uint32_are_clamped_not_wrapped():
    published, feedback = [], []
    goal = SimpleNamespace(publish_feedback=feedback.append)
    reporter = ProgressReporter(_Node(), _job(goal=goal), 'map', published.append)
    reporter('optimize', 5 * 10**9, 10**10)
    assert (published[-1].done, published[-1].total) == (UINT32_MAX, UINT32_MAX)
    assert published[-1].fraction == pytest.approx(0.05 + 0.8 * 0.5)
    assert [f.progress for f in feedback] == published  # the action's feedback is the same report
