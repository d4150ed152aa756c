"""Each variant of the synthetic data (its data.synthetic settings) in its own directory, generated once,
atomically, and never replaced under a job that reads it; concurrent generators are real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tanet_lightning.data import VideoDataModule, read_video_frames, synthetic_dir
from tanet_lightning.data.synthetic import SyntheticSpec

TINY = dict(train_per_class=1, val_per_class=1, test_per_class=1, size=16, min_frames=8, max_frames=8)


def _dm(data_dir: Path, **spec) -> VideoDataModule:
    return VideoDataModule(data_dir, "synthetic", synthetic={**TINY, **spec}, num_frames=4, short_side=16,
                           crop_size=16, num_workers=0)


def test_other_settings_get_their_own_directory_and_leave_a_running_jobs_data_alone(tmp_path):
    a = _dm(tmp_path)
    a.setup("fit")  # a job reading seed 0
    manifest = a.root / "manifest.json"
    before = manifest.stat().st_mtime_ns, (Path(a.datasets["train"].records[0].path)).read_bytes()
    b = _dm(tmp_path, seed=1)  # another job, other settings
    b.prepare_data()
    assert a.root != b.root and a.root.parent == b.root.parent == tmp_path / "synthetic"
    assert b.root == synthetic_dir(tmp_path / "synthetic", SyntheticSpec(**{**TINY, "seed": 1}))
    assert (manifest.stat().st_mtime_ns, Path(a.datasets["train"].records[0].path).read_bytes()) == before
    assert a.datasets["train"][0]["valid"]
    first = read_video_frames(a.datasets["train"].records[0].path, [0])
    b.setup("fit")
    assert not torch_equal(first, read_video_frames(b.datasets["train"].records[0].path, [0]))  # new seed
    assert json.loads((b.root / "manifest.json").read_text())["spec"]["seed"] == 1
    moved = VideoDataModule(tmp_path, "synthetic", root=str(tmp_path / "elsewhere"), synthetic=TINY)
    assert moved.root.parent == tmp_path / "elsewhere"  # data.root still decides where


def torch_equal(x, y) -> bool:
    return x.shape == y.shape and bool((x == y).all())


CHILD = """
import json, sys
from tanet_lightning.data import VideoDataModule
dm = VideoDataModule(sys.argv[1], "synthetic", synthetic=json.loads(sys.argv[2]))
dm.prepare_data()
print(dm.root)
"""


def _spawn(data_dir: Path, spec: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)


@pytest.mark.heavy
def test_concurrent_generators_of_one_or_two_variants_do_not_clash(tmp_path):
    specs = [TINY, {**TINY, "seed": 5}, TINY]
    procs = [_spawn(tmp_path, s) for s in specs]
    out = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e[-2000:] for _, e in out]
    roots = [Path(o.strip()) for o, _ in out]
    assert roots[0] == roots[2] != roots[1]
    for root, spec in zip(roots, specs):
        manifest = json.loads((root / "manifest.json").read_text())
        assert manifest["spec"] == {**SyntheticSpec().__dict__, **spec}
        assert len(list((root / "videos").rglob("*.mp4"))) == manifest["stats"]["videos"] == 24
    assert sorted(p.name for p in (tmp_path / "synthetic").iterdir() if not p.name.endswith(".lock")) == \
        sorted({r.name for r in roots})  # no temporary folders left


@pytest.mark.heavy
def test_a_killed_generator_leaves_no_partial_variant(tmp_path):
    big = {**TINY, "train_per_class": 60}
    proc = _spawn(tmp_path, big)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "synthetic").glob(".*.tmp-*/videos/train/*.mp4")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    root = synthetic_dir(tmp_path / "synthetic", SyntheticSpec(**big))
    assert not root.exists()  # readers never see a half-written dataset
    assert list((tmp_path / "synthetic").glob(".*.tmp-*"))
    dm = _dm(tmp_path, train_per_class=60)
    dm.prepare_data()
    assert dm.root == root and json.loads((root / "manifest.json").read_text())["stats"]["videos"] == 8 * 62
    assert not list((tmp_path / "synthetic").glob(".*.tmp-*"))  # the killed one's folder is gone too
