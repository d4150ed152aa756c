"""Ensembles of score files (both modes, matched by name in any order) and the multi-seed sweep report."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
import yaml

from tanet_lightning.analysis.ensemble import ensemble
from tanet_lightning.analysis.report import collect, group_rows, report
from tanet_lightning.ensemble import main as ensemble_main

NAMES = np.asarray(["a.mp4", "b.mp4", "c.mp4"])
LABELS = np.asarray([0, 1, 2])
# two models whose mean probabilities and mean logits vote differently on video a
SCORES_A = np.asarray([[6.0, 0.0, 5.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
SCORES_B = np.asarray([[0.0, 4.0, 0.0], [0.0, 2.0, 0.0], [0.0, 1.0, 0.0]])


def scores_file(path, scores, order=(0, 1, 2), names=True):
    order = list(order)
    arrays = {"video_idx": np.arange(3)[order], "labels": LABELS[order], "scores": scores[order],
              "num_views": np.ones(3)}
    if names:
        arrays["video_names"] = NAMES[order]
    np.savez(path, **arrays)
    return str(path)


def top1(scores: np.ndarray) -> float:
    return float((scores.argmax(1) == LABELS).mean())


def test_both_modes_are_the_averages_they_name(tmp_path):
    a, b = scores_file(tmp_path / "a.npz", SCORES_A), scores_file(tmp_path / "b.npz", SCORES_B)
    probs = (torch.from_numpy(SCORES_A).softmax(-1) + torch.from_numpy(SCORES_B).softmax(-1)).numpy() / 2
    logits = (SCORES_A + SCORES_B) / 2
    # video a: the mean logit says class 0 (right), the mean probability class 1 (wrong)
    assert top1(logits) == 1.0 and top1(probs) == pytest.approx(2 / 3)
    assert ensemble([a, b], mode="logits")["ensemble/top1"] == pytest.approx(top1(logits))
    assert ensemble([a, b], mode="prob")["ensemble/top1"] == pytest.approx(top1(probs))
    assert ensemble([a, b])["ensemble/top1"] == pytest.approx(top1(probs))  # prob is the default
    # weights: B alone decides where it outweighs A
    weighted = (torch.from_numpy(SCORES_A).softmax(-1) + 9 * torch.from_numpy(SCORES_B).softmax(-1)).numpy()
    assert ensemble([a, b], weights=[1, 9])["ensemble/top1"] == pytest.approx(top1(weighted)) == pytest.approx(1 / 3)


def test_the_application_prints_the_ensemble_and_refuses_with_exit_2(tmp_path, capsys, caplog):
    from tanet_lightning.ensemble import main

    a, b = scores_file(tmp_path / "a.npz", SCORES_A), scores_file(tmp_path / "b.npz", SCORES_B)
    main([a, b, "--mode", "logits"])
    assert json.loads(capsys.readouterr().out) == ensemble([a, b], mode="logits")
    with pytest.raises(SystemExit) as exit_:
        main([a, b, "--weights", "1"])
    assert exit_.value.code == 2
    assert "--weights has 1 values for 2 score files" in capsys.readouterr().err + caplog.text


@pytest.mark.parametrize("mode", ["prob", "logits"])
def test_reordered_lists_match_videos_by_name(tmp_path, mode):
    a = scores_file(tmp_path / "a.npz", SCORES_A)
    b = scores_file(tmp_path / "b.npz", SCORES_B)
    b_shuffled = scores_file(tmp_path / "b2.npz", SCORES_B, order=(2, 0, 1))
    assert ensemble([a, b_shuffled], mode=mode) == ensemble([a, b], mode=mode)
    # without names the rows are matched by video index: the same result, and a real mismatch is caught
    a_idx = scores_file(tmp_path / "a3.npz", SCORES_A, names=False)
    b_idx = scores_file(tmp_path / "b3.npz", SCORES_B, order=(1, 2, 0), names=False)
    assert ensemble([a_idx, b_idx], mode=mode) == ensemble([a, b], mode=mode)
    with pytest.raises(ValueError, match="some score files name their videos and some do not"):
        ensemble([a, b_idx], mode=mode)


def bomb(path, shape=(1_200_000, 1000), payload: int = 1 << 20) -> str:
    """A 1 KB .npz whose 'scores' header says float32 ``shape`` (4.8 GB): the npy header and ``payload``
    zeros streamed into a deflated zip member, beside real labels and names; nothing large is allocated."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("scores.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
            f.write(bytes(payload))
        for name, array in (("labels", LABELS), ("video_names", NAMES)):
            with z.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, array)
    return str(path)


def refused(args: list[str], capsys, caplog) -> str:
    """What ``python -m tanet_lightning.ensemble ARGS`` says when it exits 2 (no traceback)."""
    with pytest.raises(SystemExit) as exit_:
        ensemble_main(args)
    said = capsys.readouterr().err + caplog.text
    assert exit_.value.code == 2 and "Traceback" not in said, said
    return said


def test_a_score_file_that_would_decompress_to_gigabytes_is_refused_from_its_headers(tmp_path, capsys, caplog):
    big = bomb(tmp_path / "bomb.npz")
    assert (tmp_path / "bomb.npz").stat().st_size < 10_000
    good = scores_file(tmp_path / "a.npz", SCORES_A)
    said = refused([good, big], capsys, caplog)
    # the header's size, not the data (1 MiB of it is there): a read of the array would have failed otherwise
    assert f"{big}: array 'scores' is (1200000, 1000) float32, 4.47 GiB uncompressed" in said
    assert "refused before decompressing it" in said


def test_an_object_array_is_refused_without_unpickling(tmp_path, capsys, caplog):
    path = tmp_path / "objects.npz"
    np.savez(path, scores=np.asarray([{"a": 1}, {}, {}], dtype=object), labels=LABELS, video_names=NAMES)
    said = refused([str(path), scores_file(tmp_path / "a.npz", SCORES_A)], capsys, caplog)
    assert f"{path}: array 'scores' holds Python objects (dtype object)" in said


@pytest.mark.parametrize("case, message", [
    ("text", "is not a scores file: not a .npz archive"),
    ("extra", "holds 'model.npy', which is not an array eval writes"),
    ("rows", "array 'labels' is (2,) int64; eval writes 1-D arrays of kind 'iu' with one row per video (3 videos"),
    ("label", "labels outside 0..2"),
    ("nan", "scores that are not finite"),
    ("twice", "1 videos have more than one row"),
])
def test_a_file_that_is_not_what_eval_writes_is_refused_naming_it(case, message, tmp_path, capsys, caplog):
    path = tmp_path / f"{case}.npz"
    arrays = {"video_idx": np.arange(3), "labels": LABELS, "scores": SCORES_B, "num_views": np.ones(3),
              "video_names": NAMES}
    if case == "text":
        path.write_text("video label score\n")
    else:
        arrays.update({"extra": {"model": np.zeros(2)}, "rows": {"labels": LABELS[:2]},
                       "label": {"labels": np.asarray([0, 1, 3])}, "nan": {"scores": SCORES_B * np.nan},
                       "twice": {"video_names": NAMES[[0, 1, 1]]}}[case])
        np.savez(path, **arrays)
    said = refused([scores_file(tmp_path / "a.npz", SCORES_A), str(path)], capsys, caplog)
    assert f"{path}" in said and message in said


def fake_job(sweep, i: int, position: str, seed: int, top1: float | None):
    """A finished (or unfinished, top1=None) job directory as train writes it."""
    job = sweep / str(i)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.position={position}", f"seed={seed}"]))
    cfg = {"experiment_name": "ablation_position", "model": {"position": position, "backbone": "resnet18"},
           "data": {"format": "synthetic", "num_frames": 4}, "seed": seed}
    (job / "config_resolved.yaml").write_text(yaml.safe_dump(cfg))
    if top1 is not None:
        (job / "metrics.json").write_text(json.dumps({"test/top1": top1, "test/top5": 1.0,
                                                      "test/mean_class_acc": top1}))


def test_multi_seed_report_gives_mean_and_sample_std(tmp_path):
    sweep = tmp_path / "sweep"
    for i, (pos, seed, t1) in enumerate([("a", 0, 0.50), ("a", 1, 0.60), ("a", 2, 0.70),
                                          ("b", 0, 0.40), ("b", 1, None)]):
        fake_job(sweep, i, pos, seed, t1)
    rows = {r.setting: r for r in group_rows(collect(sweep), "ablation_position")}
    assert set(rows) == {"TANet-a", "TANet-b"}  # seeds of one setting share its row
    mean, std = rows["TANet-a"].mean_std("test/top1")
    assert mean == pytest.approx(60.0) and std == pytest.approx(10.0)  # sample std (n - 1)
    assert rows["TANet-b"].mean_std("test/top1") == (pytest.approx(40.0), None)  # one finished seed: no std
    md = report(sweep).read_text()
    line_a = next(ln for ln in md.splitlines() if ln.startswith("| TANet-a |"))
    line_b = next(ln for ln in md.splitlines() if ln.startswith("| TANet-b |"))
    assert "| 60.0 ± 10.0 |" in line_a and line_a.split(" | ")[-2] == "3" and line_a.endswith("| done |")
    assert "| 40.0 |" in line_b and line_b.split(" | ")[-2] == "1" and "1/2 done, 1 unfinished" in line_b
