"""Local comparison report of a sweep, no W&B needed (the ``report`` application writes it).

Reads every job directory of a Hydra multirun (``.hydra/overrides.yaml``, ``config_resolved.yaml``,
``metrics.json``; ``run.json`` says which job failed or was interrupted) and writes, into SWEEP_DIR:
``report.md`` (laid out like the paper's table, the paper's numbers beside ours when the experiment
has them, FLOPs/params from the complexity counter, a short hash of the test videos each number is of),
``report.csv`` and ``report.png`` (top-1 per setting, error bars over seeds). Unfinished and failed
jobs are listed as such.
``--page experiments/NAME.md`` also writes the experiment's page for the repository.

When the jobs logged to W&B (``logger=wandb``), the W&B comparison of the sweep is defined too
(``wandb_report.json``, see analysis/wandb_report.py); ``--wandb`` publishes it (a Report and a saved
workspace view). A sweep writes all of this by itself when its last job ends (tanet_lightning/sweep.py).
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import statistics
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from ..runs.lifecycle import ignored
from ..training.diagnose import metric_names
from . import wandb_report
from .paper import ARCH_NAMES, RECIPES, TABLES, own_papers_markdown, sweep_params

# what a synthetic-preset sweep cannot run, said where its command is documented (the preset's
# ResNet-18 at 32 px): the documented-commands test expects exactly these exit codes
SYNTHETIC_NOTES = {
    "ablation_position": " (position c is undefined on ResNet-18's basic blocks: that job fails, exits 1)",
}
STATES = ("failed", "interrupted", "unfinished", "not started")
METRICS = ("test/top1", "test/top5", "test/mean_class_acc", "val/top1_best")


@dataclass
class Job:
    path: Path
    overrides: dict[str, str]
    cfg: dict
    metrics: dict[str, float]
    status: str  # done | failed | interrupted | unfinished | not started
    reason: str = ""  # why a job failed: the last line of its error


@dataclass
class Row:
    setting: str
    jobs: list[Job] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [100 * j.metrics[key] for j in self.jobs if j.status == "done" and key in j.metrics]

    def mean_std(self, key: str) -> tuple[float | None, float | None]:
        v = self.values(key)
        if not v:
            return None, None
        return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else None)

    def first(self, key: str) -> float | None:
        return next((j.metrics[key] for j in self.jobs if key in j.metrics), None)

    @property
    def status(self) -> str:
        states = [j.status for j in self.jobs]
        done = states.count("done")
        if done == len(states):
            return "done"
        why = "; ".join(sorted({j.reason for j in self.jobs if j.reason}))
        return f"{done}/{len(states)} done, " + ", ".join(
            f"{states.count(s)} {s}" for s in STATES if states.count(s)) + (f" ({why})" if why else "")


def load_job(path: Path) -> Job:
    overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    pairs = {k: v for k, v in (o.lstrip("+~").split("=", 1) for o in overrides if "=" in o) if not ignored(k)}
    resolved = path / "config_resolved.yaml"
    if resolved.is_file():
        cfg = yaml.safe_load(resolved.read_text())
    else:  # the job died before train() saved it: the unresolved Hydra copy still names the settings
        cfg = OmegaConf.to_container(OmegaConf.load(path / ".hydra" / "config.yaml"), resolve=False)
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    status, reason = "unfinished", ""
    run = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
    if run.get("state") == "failed":  # run.json: runs/lifecycle.py
        status, reason = "failed", run.get("reason", "")[:200]
    elif run.get("state") in ("interrupted", "requeued"):
        status = "interrupted"
    elif "test/top1" in metrics:
        status = "done"
    return Job(path, pairs, cfg, metrics, status, reason)


def planned_overrides(sweep_dir: Path) -> list[list[str]]:
    """Every job the sweep was launched with (from its multirun.yaml), started or not: a sweep stopped
    part-way (SIGTERM, time limit) still reports the points it never reached."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return []
    root = OmegaConf.load(path)
    hydra_cfg = root.hydra
    if not str(hydra_cfg.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return []  # a search (hparams_search=...) proposes its trials as it goes: none is planned up front
    params = _sweep_params(hydra_cfg.sweeper, root)
    cli = list(hydra_cfg.overrides.task)
    parsed = OverridesParser.create().parse_overrides([*(f"{k}={v}" for k, v in params.items()), *cli])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _sweep_params(sweeper, root=None) -> dict:
    """The sweeper's params; a paper sweep's ``${tanet.sweep:NAME}`` is read from paper.py directly, so
    the report needs no resolver registered (resolvers belong to the applications); ``root`` (the sweep's
    config) says whether it ran on the synthetic data, where a sweep may pin more (paper.py ``synthetic``)."""
    raw = OmegaConf.to_container(sweeper, resolve=False).get("params") or {}
    if isinstance(raw, str):
        match = re.fullmatch(r"\$\{tanet\.sweep:\s*([\w-]+)\s*\}", raw)
        if not match:
            raise ValueError(f"hydra.sweeper.params={raw!r}: not a paper sweep reference")
        return sweep_params(match.group(1), _root_=root)
    return OmegaConf.to_container(sweeper, resolve=True).get("params") or {}


def _point(overrides: list[str]) -> tuple[str, ...]:
    """A job's sweep point: ckpt_path=last (the launch that finished a stopped sweep) is not part of it."""
    return tuple(sorted(o for o in overrides if not ignored(o.lstrip("+~").split("=", 1)[0])))


def collect(sweep_dir: Path) -> list[Job]:
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: not a directory (give a Hydra multirun directory)")
    jobs = [load_job(p.parent.parent) for p in sorted(sweep_dir.glob("*/.hydra/overrides.yaml"))]
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: no job directories (*/.hydra/overrides.yaml) found")
    started = {_point(yaml.safe_load((j.path / ".hydra" / "overrides.yaml").read_text()) or []) for j in jobs}
    for overrides in planned_overrides(sweep_dir):
        if _point(overrides) not in started:
            pairs = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
            jobs.append(Job(sweep_dir / "(not started)", pairs, _planned_cfg(jobs[0].cfg, pairs), {}, "not started"))
    return jobs


def _planned_cfg(template: dict, pairs: dict[str, str]) -> dict:
    """A job's config for naming its row: a started job's config with the planned values put in."""
    cfg = OmegaConf.create(copy.deepcopy(template))
    for key, value in pairs.items():
        if key == "model/temporal":  # the option's file name is the module's name
            OmegaConf.update(cfg, "model.temporal", {"name": value}, merge=False, force_add=True)
        elif "/" in key:  # another group choice: its values are unknown here, so no paper row name
            return {}
        else:
            OmegaConf.update(cfg, key, yaml.safe_load(value.replace(":", ": ")) if "{" in value else
                             yaml.safe_load(value), force_add=True)
    return OmegaConf.to_container(cfg)


def experiment_of(jobs: list[Job]) -> str:
    return str(jobs[0].cfg.get("experiment_name", "")) or "sweep"


def group_rows(jobs: list[Job], experiment: str) -> list[Row]:
    """One row per setting: the paper's row name when known, else the swept overrides (seed aside)."""
    table = TABLES.get(experiment)
    varying = sorted(k for k in {k for j in jobs for k in j.overrides}
                     if k != "seed" and len({j.overrides.get(k) for j in jobs}) > 1)
    rows: dict[str, Row] = {}
    for job in jobs:
        try:
            name = table.row(job.cfg) if table else None
        except (KeyError, TypeError):
            name = None
        name = name or ", ".join(f"{k}={job.overrides.get(k)}" for k in varying) or "all"
        rows.setdefault(name, Row(name)).jobs.append(job)
    order = list(table.numbers) if table else []
    return sorted(rows.values(), key=lambda r: order.index(r.setting) if r.setting in order else len(order))


def time_columns(rows: list[Row], csv: bool = False) -> dict[str, str]:
    """The temporal-reliance diagnostic's columns (``+diagnose=time``, training/diagnose.py) that some job
    logged, key -> header: in the table the other orders' top-1 and how many predictions changed (the
    ordered top-1 is the top-1 column, a drop is the difference); in the CSV every time/* key."""
    keys = [k for k in metric_names() if csv or (k.startswith(("time/top1_", "time/changed_"))
                                                 and k != "time/top1_ordered")]
    return {k: k if csv else k.removeprefix("time/").replace("top1_", "top-1 ").replace("_", " ")
            for k in keys if any(r.values(k) for r in rows)}


def fmt(x: float | None, std: float | None = None, digits: int = 1) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def table_markdown(rows: list[Row], experiment: str) -> str:
    paper = TABLES[experiment].numbers if experiment in TABLES else {}
    time = time_columns(rows)
    head = ["setting", "top-1", "top-5", "mean class acc", "paper top-1", "paper top-5", "GFLOPs", "params (M)",
            *time.values(), "test data", "seeds", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p1, p5 = paper.get(r.setting, (None, None))
        flops, params = r.first("model/gflops"), r.first("model/params")
        lines.append("| " + " | ".join([
            r.setting, fmt(*r.mean_std("test/top1")), fmt(*r.mean_std("test/top5")),
            fmt(*r.mean_std("test/mean_class_acc")), fmt(p1, digits=2), fmt(p5, digits=2),
            fmt(flops, digits=3), fmt(params / 1e6 if params else None, digits=3),
            *(fmt(*r.mean_std(k)) for k in time), data_cell(r.jobs), str(len(r.values("test/top1"))), r.status]) + " |")
    return "\n".join(lines)


# --- split fingerprints (runs/fingerprints.py): which test videos each number is of ---
def split_fingerprint(job: Job, split: str = "test") -> dict:
    return (job.metrics.get("data_fingerprint") or {}).get(split) or {}


def data_cell(jobs: list[Job]) -> str:
    """`3f2a9c1e` (1,000 videos) per distinct test split of a row's finished jobs: a short hash of the
    sorted (video id, label) pairs, the videos found, and the unreadable ones when there were any."""
    cells = []
    for fp in (split_fingerprint(j) for j in jobs if j.status == "done"):
        if not fp:
            continue
        bad = f", {fp['unreadable']:,} unreadable" if fp.get("unreadable") else ""
        cell = f"`{fp['videos_sha256'][:8]}` ({fp['found']:,} videos{bad})"
        if cell not in cells:
            cells.append(cell)
    return "<br>".join(cells) or "–"
# ---


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        time = list(time_columns(rows, csv=True))
        w.writerow(["setting", "job_dir", "status", *METRICS, "model/gflops", "model/params", "test_videos",
                    "test_videos_sha256", *time])
        for r in rows:
            for j in r.jobs:
                fp = split_fingerprint(j)
                w.writerow([r.setting, j.path.name, j.status, *(j.metrics.get(k, "") for k in METRICS),
                            j.metrics.get("model/gflops", ""), j.metrics.get("model/params", ""),
                            fp.get("found", ""), fp.get("videos_sha256", ""), *(j.metrics.get(k, "") for k in time)])


# --- what ran, facets, intervals, the picture (issue 21) ---------------------------------------------------
DATASETS = {"kinetics_csv": "Kinetics-400", "sthv1_csv": "Something-Something V1",
            "sthv2_json": "Something-Something V2"}
BLIND_LEVEL = 50.0  # synthetic data: 4 time-reversal pairs; an order-blind model gets the pair, then a coin flip


def _cfg(job: Job, dotted: str, default=None):
    node = job.cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def data_name(job: Job) -> str:
    """The data a job ran on, in words: the synthetic task, the paper's dataset, else the format."""
    fmt_ = _cfg(job, "data.format", "?")
    if fmt_ == "synthetic":
        return f"synthetic {_cfg(job, 'data.synthetic.task', 'motion')} videos"
    return DATASETS.get(fmt_, f"data format {fmt_}")


def setting_words(jobs: list[Job]) -> str:
    """'synthetic motion videos, ResNet-18, 8 frames, 32 px': what every job of a sweep (or facet) shares."""
    def one(key, default="?"):
        values = sorted({str(_cfg(j, key, default)) for j in jobs})
        return values[0] if len(values) == 1 else "/".join(values)

    tasks = sorted({str(_cfg(j, "data.synthetic.task", "motion")) for j in jobs
                    if _cfg(j, "data.format") == "synthetic"})
    data = sorted({data_name(j) for j in jobs if _cfg(j, "data.format") != "synthetic"})
    data += [f"synthetic {' + '.join(tasks)} videos"] if tasks else []
    backbone = one("model.backbone")
    backbone = ARCH_NAMES.get(backbone.split(".")[0], backbone)
    return f"{' + '.join(data)}, {backbone}, {one('data.num_frames')} frames, {one('data.crop_size')} px"


def in_paper_setting(jobs: list[Job], experiment: str) -> bool:
    """Whether the paper's numbers may be drawn beside ours: every job ran in the paper table's setting."""
    table = TABLES.get(experiment)
    return table is not None and all(j.status == "not started" or table.in_setting(j.cfg) for j in jobs)


def title_of(jobs: list[Job], experiment: str) -> str:
    """The paper table's title when the sweep ran in its setting, else the table's name and what ran."""
    if in_paper_setting(jobs, experiment):
        return TABLES[experiment].title
    seeds = len({j.overrides.get("seed", _cfg(j, "seed")) for j in jobs})
    name = f"{TABLES[experiment].title.split(':')[0]} settings" if experiment in TABLES else f"Sweep `{experiment}`"
    return f"{name} on {setting_words(jobs)} ({seeds} seed{'s' if seeds > 1 else ''})"


def facet_keys(jobs: list[Job], experiment: str) -> list[str]:
    """Swept keys that are not the table's own (nor the seed), e.g. data.synthetic.task: one table each."""
    table = TABLES.get(experiment)
    if table is None:
        return []
    own = set(table.sweep) | {k.lstrip("+") for k in table.sweep} | set(table.keys) | {"seed"}
    return sorted(k for k in {k for j in jobs for k in j.overrides}
                  if k not in own and len({j.overrides.get(k) for j in jobs}) > 1)


def facets(jobs: list[Job], experiment: str) -> list[tuple[str, list[Job]]]:
    """(label, jobs) per value of the facet keys, in sweep order; one unnamed facet when there are none."""
    keys = facet_keys(jobs, experiment)
    out: dict[str, list[Job]] = {}
    for job in jobs:
        out.setdefault(", ".join(f"{k}={job.overrides.get(k)}" for k in keys), []).append(job)
    return list(out.items())


def interval(row: Row, key: str = "test/top1") -> tuple[float, float] | None:
    mean, std = row.mean_std(key)
    return None if mean is None or std is None else (mean - std, mean + std)


def overlap_markdown(rows: list[Row], key: str = "test/top1") -> str:
    """Which settings' mean ± std intervals overlap: '=' overlap, '<'/'>' the row's interval lies below/above
    the column's. Only settings with two or more finished seeds take part."""
    rows = [r for r in rows if interval(r, key)]
    if len(rows) < 2:
        return ""
    lines = ["| # | setting | " + " | ".join(str(i + 1) for i in range(len(rows))) + " |",
             "|---|---|" + "---|" * len(rows)]
    for i, r in enumerate(rows):
        lo, hi = interval(r, key)
        cells = []
        for j, c in enumerate(rows):
            clo, chi = interval(c, key)
            cells.append("" if i == j else "<" if hi < clo else ">" if lo > chi else "=")
        lines.append(f"| {i + 1} | {r.setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(per_facet: list[tuple[str, list[Row]]], key: str = "test/top1") -> str:
    """One row per setting, one column per facet: mean ± std of test top-1 and its number of seeds."""
    names = list(dict.fromkeys(r.setting for _, rows in per_facet for r in rows))
    head = ["setting", *(f"{label} (top-1)" for label, _ in per_facet)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        cells = []
        for _, rows in per_facet:
            row = next((r for r in rows if r.setting == name), None)
            n = len(row.values(key)) if row else 0
            cells.append(fmt(*row.mean_std(key)) + f" (n={n})" if row and n else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def job_seconds(job: Job) -> float | None:
    """A finished job's wall time from its run.json (started/ended, runs/lifecycle.py)."""
    from datetime import datetime

    try:
        run = json.loads((job.path / "run.json").read_text())
        return (datetime.fromisoformat(run["ended"]) - datetime.fromisoformat(run["started"])).total_seconds()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cost_words(jobs: list[Job]) -> str:
    seconds = [s for s in map(job_seconds, jobs) if s is not None]
    if not seconds:
        return ""
    threads = sorted({"PyTorch's default" if _cfg(j, "torch_threads") is None else str(_cfg(j, "torch_threads"))
                      for j in jobs})
    return (f"Jobs' wall time: {sum(seconds) / 60:.1f} min in all ({len(seconds)} jobs, "
            f"{statistics.fmean(seconds):.0f} s each on average; torch_threads: {'/'.join(threads)}).")


def plot(per_facet: list[tuple[str, list[Row]]], experiment: str, path: Path, title: str, ylabel: str,
         paper_beside: bool, blind_level: float | None = None) -> None:
    import matplotlib.pyplot as plt

    fig = figure(per_facet, experiment, title, ylabel, paper_beside, blind_level)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def figure(per_facet: list[tuple[str, list[Row]]], experiment: str, title: str, ylabel: str,
           paper_beside: bool, blind_level: float | None = None):
    """Grouped bars: settings along x, one colour per facet; error bars (sample std) where several seeds
    ran; the paper's top-1 as markers only when the sweep ran in the paper's setting; legend outside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paper = TABLES[experiment].numbers if experiment in TABLES and paper_beside else {}
    names = list(dict.fromkeys(r.setting for _, rows in per_facet for r in rows))
    width = 0.8 / len(per_facet)
    fig, ax = plt.subplots(figsize=(max(7, 0.45 * len(names) * len(per_facet) + 3), 4.2))
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    for f, (label, rows) in enumerate(per_facet):
        by_name = {r.setting: r for r in rows}
        xs = [i - 0.4 + width * (f + 0.5) for i in range(len(names))]
        stats = [by_name[n].mean_std("test/top1") if n in by_name else (None, None) for n in names]
        means = [m or 0.0 for m, _ in stats]
        errs = [s or 0.0 for _, s in stats]
        seeds = max((len(r.values("test/top1")) for r in rows), default=0)
        what = ", ".join(part.split(".")[-1] for part in label.split(", ")) if label else "measured"
        ax.bar(xs, means, width=width * 0.9, color=colours[f % len(colours)],
               yerr=errs if any(errs) else None, capsize=3 if any(errs) else 0,
               label=f"{what} (mean ± std, {seeds} seeds)" if seeds > 1 else what)
        for x, n in zip(xs, names):
            row = by_name.get(n)
            if row is not None and row.status != "done":
                ax.annotate(row.status.split(",")[-1].strip(), (x, 1), ha="center", fontsize=6, rotation=90)
    marks = [(i, paper[n][0]) for i, n in enumerate(names) if n in paper]
    if marks:
        ax.scatter(*zip(*marks), color="black", marker="D", s=18, zorder=3, label="paper top-1 (same setting)")
    if blind_level is not None:
        ax.axhline(blind_level, color="grey", linestyle="--", linewidth=0.8, label="order-blind level")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside, never on a bar
    fig.tight_layout()
    return fig
# --- end of issue 21's block -------------------------------------------------------------------------------


def data_label(jobs: list[Job]) -> str:
    data = jobs[0].cfg.get("data", {})
    fmt_ = data.get("format", "?")
    model = jobs[0].cfg.get("model", {})
    return f"data format `{fmt_}`, backbone `{model.get('backbone', '?')}`, {data.get('num_frames', '?')} frames"


def report(sweep_dir: Path, page: Path | None = None) -> Path:
    jobs = collect(sweep_dir)
    experiment = experiment_of(jobs)
    title = title_of(jobs, experiment)
    matched = in_paper_setting(jobs, experiment)
    per_facet = [(label, group_rows(part, experiment)) for label, part in facets(jobs, experiment)]
    rows = [r for _, rs in per_facet for r in rs]
    sections = []
    for label, facet_rows in per_facet:
        part = "\n\n".join(x for x in [
            f"### {label}" if label else "", table_markdown(facet_rows, experiment),
            (f"Intervals (mean ± std of test top-1) that overlap (=) or not (<, >: the row's lies below or above "
             f"the column's):\n\n{overlap_markdown(facet_rows)}") if overlap_markdown(facet_rows) else ""] if x)
        sections.append(part)
    table = "\n\n".join(sections)
    if len(per_facet) > 1:
        table = f"{summary_markdown(per_facet)}\n\n{table}"
    paper_note = ""
    if experiment in TABLES and not matched:
        paper_note = (f"The paper columns are the paper's own numbers ({TABLES[experiment].title}), another "
                      f"setting than this sweep's: listed for reference, not drawn in the picture.\n")
    cost = cost_words(jobs)
    md = (f"# {title}\n\nSweep: `{sweep_dir}` ({len(jobs)} jobs; {data_label(jobs)}).\n"
          f"Mean over seeds ± sample std where several seeds ran; top-1/top-5 on the test split, % .\n"
          f"{paper_note}{cost + chr(10) if cost else ''}\n{table}\n\n![top-1 per setting](report.png)\n")
    (sweep_dir / "report.md").write_text(md)
    write_csv(rows, sweep_dir / "report.csv")
    synthetic = all(_cfg(j, "data.format") == "synthetic" for j in jobs)
    ylabel = f"test top-1 (%), {setting_words(jobs).split(', ')[0]}"  # the data; the title has the rest
    plot(per_facet, experiment, sweep_dir / "report.png", title, ylabel, matched,
         BLIND_LEVEL if synthetic else None)
    spec = wandb_report.definition(jobs, experiment, title, table, sweep_dir)
    if spec is not None:
        wandb_report.write(sweep_dir, spec)
    if page is not None:
        write_page(page, experiment, measured=(table, data_label(jobs), sweep_dir, title, cost))
    return sweep_dir / "report.md"


# CPU benchmarks of a sweep on the synthetic preset: experiment -> (extra overrides, what it runs, its measured
# cost). Their command is documented beside the sweep's and not run by the documented-commands test (too long
# for CI).
BENCHMARKS = {
    "temporal_modules": ("seed=0,1,2 data.synthetic.task=motion,order +diagnose=time",
                         "every module x 3 seeds x 2 synthetic tasks, with the time diagnostic",
                         "43 min on 2 idle cores"),  # measured: experiments/temporal_modules.md
    # the ViT rows of that benchmark (issue 31): a ViT-Ti from scratch, end to end; measured on
    # experiments/temporal_modules_vit.md
    "temporal_modules_vit": ("model.freeze_backbone=false model/temporal=c2d,tokshift,tam,st_adapter,atm seed=0,1,2 "
                             "data.synthetic.task=motion,order +diagnose=time",
                             "the ViT rows (ViT-Ti from scratch) x 3 seeds x 2 synthetic tasks, with the time "
                             "diagnostic", "~45 min a job on 2 cores shared by 8 engineers"),
}
NOTES = "## Notes"  # a page's hand-written section: kept when the report rewrites the page


def write_page(page: Path, experiment: str, measured: tuple | None = None) -> None:
    """experiments/NAME.md: the command, the paper's numbers, and what this project measured. An existing
    page's ``## Notes`` section (what the numbers mean, written by hand) is kept."""
    notes = ""
    if page.is_file() and f"\n{NOTES}\n" in page.read_text():
        notes = f"{NOTES}\n" + page.read_text().split(f"\n{NOTES}\n", 1)[1]
    page.parent.mkdir(parents=True, exist_ok=True)
    if experiment in TABLES:
        t = TABLES[experiment]
        paper = "\n".join(["| setting | top-1 | top-5 |", "|---|---|---|",
                           *(f"| {k} | {a:.2f} | {b:.2f} |" for k, (a, b) in t.numbers.items())])
        own = own_papers_markdown(t)
        if own:
            paper += ("\n\nThe modules after TAM in this sweep, as their own papers report them (other datasets "
                      f"and protocols than the table above):\n\n{own}")
        title, command = t.title, t.command
        swept = " x ".join(f"`{k}={v}`" for k, v in t.sweep.items())
    else:
        title, top1, top5 = RECIPES[experiment]
        paper = f"| setting | top-1 | top-5 |\n|---|---|---|\n| {title} | {top1} | {top5} |"
        command = f"python -m tanet_lightning.train +experiment={experiment}"
        swept = ""
    sweep = experiment in TABLES
    synthetic = f"the same {'sweep' if sweep else 'recipe'} on the embedded synthetic data, CPU"
    note = SYNTHETIC_NOTES.get(experiment, "")
    bench = ""
    if experiment in BENCHMARKS:
        extra, what, cost = BENCHMARKS[experiment]
        bench = f"{command} +preset=synthetic {extra}    # the CPU benchmark: {what} ({cost}: not run here)\n"
    text = (f"# {title}\n\n## Reproduce\n\n```bash\n{command}                      # the paper's recipe "
            f"(needs the dataset, GPUs)\n{command} +preset=synthetic    # {synthetic}{note}\n{bench}"
            + (f"python -m tanet_lightning.report {experiment}    # report.md/.csv/.png of the newest sweep\n"
               if sweep else "")
            + "```\n\n"
            + (f"Sweeps {swept} (one job per combination; declared in `src/tanet_lightning/analysis/paper.py`). With "
               f"`logger=wandb` (the default here) the sweep also defines its W&B report: `wandb_report.json` "
               f"in the sweep directory, published at once when online, else by `python -m "
               f"tanet_lightning.report {experiment} --wandb`.\n\n" if swept else "")
            + f"## Paper\n\n{paper}\n\n## Measured\n\n")
    if measured is None:
        text += "Full-data run: not yet run.\n"
    else:
        table, label, sweep_dir, *more = measured
        what, cost = (more + [None, ""])[:2]
        text += (f"Full-data run: not yet run.\n\n{what or 'Synthetic data on CPU'} ({label}; generated by "
                 f"`python -m tanet_lightning.report {sweep_dir.name}`). The synthetic task is not Kinetics: "
                 f"compare settings with each other, not with the paper's numbers.{' ' + cost if cost else ''}"
                 f"\n\n{table}\n")
    if notes:
        text += "\n" + notes
    page.write_text(text)


def find_sweep(name_or_dir: str | Path, log_dir: str | Path | None = None) -> Path:
    """A sweep directory as given, or the newest sweep of an experiment name under the log directory
    (``$TANET_LOG_DIR``, else ``./logs``): ``report ablation_alpha_beta`` needs no timestamp."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    root = Path(log_dir or os.environ.get("TANET_LOG_DIR") or "logs") / "train" / "multiruns" / str(name_or_dir)
    sweeps = sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
    if not sweeps:
        raise FileNotFoundError(f"{name_or_dir}: neither a sweep directory nor an experiment with sweeps in {root}")
    return sweeps[-1]  # Hydra names sweeps by launch time (%Y-%m-%d_%H-%M-%S): the last is the newest
