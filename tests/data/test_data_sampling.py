"""Sampler indices against the numbers the official code and MMAction2 give for the same settings."""

from __future__ import annotations

import numpy as np
import pytest

from tanet_lightning.data.sampling import ClipSampler, dense_test, dense_train, uniform_test, uniform_train


def test_dense_test_fact_13():
    clips = dense_test(300, 8, 64, 10)
    assert clips.shape == (10, 8)
    np.testing.assert_array_equal(clips[:, 0], np.linspace(0, 236, 10).astype(int))
    np.testing.assert_array_equal(np.diff(clips, axis=1), 8)  # stride 64 // 8
    assert clips.max() <= 299


def test_dense_train_range_and_stride():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(500):
        idx = dense_train(300, 8, 64, rng)
        np.testing.assert_array_equal(np.diff(idx), 8)
        starts.add(int(idx[0]))
    assert min(starts) == 0 and max(starts) == 235  # start in [0, sample_pos - 2], sample_pos = 237
    np.testing.assert_array_equal(np.diff(dense_train(300, 16, 64, rng)), 4)  # 16x4


def test_dense_short_video_wraps():
    rng = np.random.default_rng(0)
    for f in (10, 48, 64):
        np.testing.assert_array_equal(dense_train(f, 8, 64, rng), (8 * np.arange(8)) % f)  # start 0, mod F
        np.testing.assert_array_equal(dense_test(f, 8, 64, 10), np.tile((8 * np.arange(8)) % f, (10, 1)))


def test_uniform_test_fact_14():
    np.testing.assert_array_equal(uniform_test(80, 8)[0], [5, 15, 25, 35, 45, 55, 65, 75])
    np.testing.assert_array_equal(
        uniform_test(80, 8)[0] + 1, [6, 16, 26, 36, 46, 56, 66, 76]
    )  # 1-based files


def test_uniform_two_clips_centre_and_start():
    two = uniform_test(80, 8, 2)
    np.testing.assert_array_equal(two[0], 5 + 10 * np.arange(8))
    np.testing.assert_array_equal(two[1], 10 * np.arange(8))


def test_uniform_train_one_frame_per_segment():
    rng = np.random.default_rng(0)
    seen = np.zeros(80, bool)
    for _ in range(300):
        idx = uniform_train(80, 8, rng)
        np.testing.assert_array_equal(idx // 10, np.arange(8))
        seen[idx] = True
    assert seen.all()  # every offset in every segment is reachable


def test_uniform_fewer_frames_than_segments_keeps_order():
    idx = uniform_train(5, 8, np.random.default_rng(0))
    assert idx.min() >= 0 and idx.max() <= 4 and (np.diff(idx) >= 0).all()
    assert uniform_test(5, 8).max() <= 4


def test_clip_sampler_dispatch_and_validation():
    s = ClipSampler("dense", 8)
    assert s.val(300).tolist() == (118 + 8 * np.arange(8)).tolist()  # official val: start sample_pos // 2
    assert s.test(300, 10).shape == (10, 8)
    u = ClipSampler("uniform", 8)
    assert u.val(80).tolist() == uniform_test(80, 8)[0].tolist()
    with pytest.raises(ValueError, match="dense.*uniform"):
        ClipSampler("random", 8)
    with pytest.raises(ValueError, match="window"):
        ClipSampler("dense", 16, window=8)
