"""The report of a multi-seed, multi-task sweep (the CPU temporal benchmark), on fabricated job directories:
mean ± std per module and task, which intervals overlap, a picture that names what ran, the paper's
numbers drawn only for the paper's own setting, and the page that keeps its hand-written notes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import matplotlib.pyplot as plt
import pytest
import yaml
from matplotlib.container import BarContainer

from tanet_lightning.analysis.report import (
    collect,
    facets,
    figure,
    group_rows,
    in_paper_setting,
    overlap_markdown,
    report,
    title_of,
    write_page,
)

START = datetime(2026, 12, 4, 12, 0, 0)


def fake_job(sweep, i: int, module: str, seed: int, top1: float, task: str | None = "motion",
             fmt: str = "synthetic", backbone: str = "resnet18", extra: tuple[str, ...] = ()):
    job = sweep / str(i)
    (job / ".hydra").mkdir(parents=True)
    overrides = [f"model/temporal={module}", f"seed={seed}"] + ([f"data.synthetic.task={task}"] if task else [])
    overrides += list(extra)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    data = {"format": fmt, "num_frames": 8, "crop_size": 32 if fmt == "synthetic" else 224}
    if task:
        data["synthetic"] = {"task": task}
    cfg = {"experiment_name": "temporal_modules", "model": {"temporal": {"name": module}, "backbone": backbone},
           "data": data, "seed": seed, "torch_threads": 2}
    (job / "config_resolved.yaml").write_text(yaml.safe_dump(cfg))
    (job / "metrics.json").write_text(json.dumps({"test/top1": top1, "test/top5": 1.0, "test/mean_class_acc": top1}))
    (job / "run.json").write_text(json.dumps({"state": "done", "started": START.isoformat(),
                                              "ended": (START + timedelta(seconds=15)).isoformat()}))


# module -> task -> top-1 per seed: TAM separates from C2D on both tasks; TSM and TAM overlap on motion
RESULTS = {"c2d": {"motion": (0.40, 0.45, 0.50), "order": (0.48, 0.50, 0.52)},
           "tsm": {"motion": (0.80, 0.85, 0.90), "order": (0.55, 0.60, 0.65)},
           "tam": {"motion": (0.85, 0.90, 0.95), "order": (0.80, 0.85, 0.90)}}


@pytest.fixture
def sweep(tmp_path):
    sweep = tmp_path / "sweep"
    i = 0
    for module, tasks in RESULTS.items():
        for task, values in tasks.items():
            for seed, top1 in enumerate(values):
                fake_job(sweep, i, module, seed, top1, task)
                i += 1
    return sweep


def test_tasks_are_facets_and_seeds_share_a_row(sweep):
    jobs = collect(sweep)
    parts = dict(facets(jobs, "temporal_modules"))
    assert set(parts) == {"data.synthetic.task=motion", "data.synthetic.task=order"}
    rows = {r.setting: r for r in group_rows(parts["data.synthetic.task=order"], "temporal_modules")}
    assert set(rows) == {"C2D", "TSM", "TANet"}
    mean, std = rows["TANet"].mean_std("test/top1")
    assert mean == pytest.approx(85.0) and std == pytest.approx(5.0)
    order = matrix(overlap_markdown(list(rows.values())))
    assert order["C2D"] == ["", "<", "<"]  # C2D [48, 52] lies below TSM [55, 65] and TANet [80, 90]
    assert order["TANet"] == [">", ">", ""]
    motion = matrix(overlap_markdown(group_rows(parts["data.synthetic.task=motion"], "temporal_modules")))
    assert motion["TSM"] == [">", "", "="]  # TSM [80, 90] above C2D [40, 50], overlapping TANet [85, 95]


def test_a_resumed_sweeps_jobs_stay_in_their_rows(tmp_path):
    """The sweep's own message finishes a stopped sweep with `... ckpt_path=last`: the jobs that launch ran
    carry that override (and may carry paths.*/logger), which cannot change results: same rows, no facet."""
    sweep = tmp_path / "sweep"
    for i, (seed, extra) in enumerate([(0, ()), (1, ("ckpt_path=last",)), (2, ("ckpt_path=last", "logger=csv"))]):
        fake_job(sweep, i, "tam", seed, 0.8 + 0.05 * seed, "order", extra=extra)
    parts = facets(collect(sweep), "temporal_modules")
    assert [label for label, _ in parts] == [""]
    (row,) = group_rows(parts[0][1], "temporal_modules")
    assert row.setting == "TANet" and row.mean_std("test/top1")[0] == pytest.approx(85.0)


def matrix(md: str) -> dict[str, list[str]]:
    """setting -> its cells of the overlap matrix."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines()[2:]]
    return {r[1]: r[2:] for r in rows}


def test_report_names_what_ran_and_keeps_the_papers_numbers_in_the_table_only(sweep, tmp_path):
    jobs = collect(sweep)
    assert not in_paper_setting(jobs, "temporal_modules")
    title = title_of(jobs, "temporal_modules")
    assert "Kinetics" not in title and "ResNet-50" not in title
    assert title.startswith("Table 2 settings on synthetic motion + order videos, ResNet-18, 8 frames, 32 px")
    assert "(3 seeds)" in title
    md = report(sweep, tmp_path / "page.md").read_text()
    assert md.startswith(f"# {title}\n")
    assert "the paper's own numbers (Table 2: temporal modules (Kinetics-400" in md and "76.10" in md
    assert "| TANet | 90.0 ± 5.0 (n=3) | 85.0 ± 5.0 (n=3) |" in md  # the summary: one column per task
    assert "### data.synthetic.task=order" in md and "4.5 min in all (18 jobs, 15 s each" in md
    page = (tmp_path / "page.md").read_text()
    assert "seed=0,1,2 data.synthetic.task=motion,order" in page and "not run here)" in page
    assert "| TANet | 90.0 ± 5.0 (n=3) | 85.0 ± 5.0 (n=3) |" in page and "Kinetics-400, ResNet-50" not in \
        page.split("## Measured")[1].split("\n\n")[1]
    with open(tmp_path / "page.md", "a") as f:
        f.write("\n## Notes\n\nWhat the numbers mean, by hand.\n")
    write_page(tmp_path / "page.md", "temporal_modules")
    assert (tmp_path / "page.md").read_text().endswith("## Notes\n\nWhat the numbers mean, by hand.\n")


def test_picture_error_bars_no_paper_markers_off_setting_legend_beside_the_bars(sweep):
    jobs = collect(sweep)
    per_facet = [(label, group_rows(part, "temporal_modules")) for label, part in facets(jobs, "temporal_modules")]
    fig = figure(per_facet, "temporal_modules", title_of(jobs, "temporal_modules"), "test top-1 (%)", False, 50.0)
    ax = fig.axes[0]
    assert ax.get_title().replace("\n", " ") == title_of(jobs, "temporal_modules")
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 2 and all(c.errorbar is not None for c in bars)  # one set per task, with error bars
    assert not ax.collections or all(len(c.get_offsets()) == 0 for c in ax.collections
                                     if c.__class__.__name__ == "PathCollection")  # no paper diamonds
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the axes: it covers no bar
    plt.close(fig)


def test_paper_numbers_are_drawn_only_in_the_papers_setting(tmp_path):
    sweep = tmp_path / "k400"
    for i, (module, top1) in enumerate([("c2d", 0.70), ("tam", 0.76)]):
        fake_job(sweep, i, module, 0, top1, task=None, fmt="kinetics_csv", backbone="resnet50")
    jobs = collect(sweep)
    assert in_paper_setting(jobs, "temporal_modules")
    assert title_of(jobs, "temporal_modules").startswith("Table 2: temporal modules (Kinetics-400, ResNet-50")
    rows = group_rows(jobs, "temporal_modules")
    fig = figure([("", rows)], "temporal_modules", "t", "y", True)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 2  # a diamond per row
    assert [c.errorbar for c in fig.axes[0].containers] == [None]  # one seed: no error bars
    plt.close(fig)
    md = report(sweep).read_text()
    assert "the paper's own numbers" not in md and "### " not in md


def test_frozen_backbone_runs_get_a_trained_parameters_column(tmp_path):
    """model.freeze_backbone: trained / total parameters beside top-1; no such column when nothing froze."""
    sweep = tmp_path / "sweep"
    for i, module in enumerate(("st_adapter", "tam")):
        fake_job(sweep, i, module, 0, 0.5 + 0.1 * i, "order")
        metrics = json.loads((sweep / str(i) / "metrics.json").read_text())
        trained = 7_000_000 if module == "st_adapter" else 90_000_000
        metrics.update({"model/params": 90_000_000.0, "model/params_trained": float(trained)})
        (sweep / str(i) / "metrics.json").write_text(json.dumps(metrics))
    md = report(sweep, tmp_path / "page.md").read_text()
    assert "| top-1 | trained / params (M) | top-5 |" in md
    assert "| 7.000 / 90.000 |" in md and "| 90.000 / 90.000 |" in md


def test_a_page_of_a_sweep_that_is_no_paper_experiment_is_refused_before_writing(tmp_path):
    """`report --page` of a search or a plain sweep: a KeyError traceback (exit 1) after report.md was written."""
    from tanet_lightning.base.errors import ConfigError

    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, "tam", 0, 0.5)
    cfg_file = sweep / "0" / "config_resolved.yaml"
    cfg_file.write_text(cfg_file.read_text().replace("experiment_name: temporal_modules", "experiment_name: default"))
    with pytest.raises(ConfigError, match="--page writes the experiments page of a paper experiment .*'default'"):
        report(sweep, page=tmp_path / "default.md")
    assert not (sweep / "report.md").exists() and not (tmp_path / "default.md").exists()
