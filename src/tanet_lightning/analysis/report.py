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
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from ..training.diagnose import metric_names
from . import wandb_report
from .paper import RECIPES, TABLES, sweep_params

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
    pairs = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    resolved = path / "config_resolved.yaml"
    if resolved.is_file():
        cfg = yaml.safe_load(resolved.read_text())
    else:  # the job died before train() saved it: the unresolved Hydra copy still names the settings
        cfg = OmegaConf.to_container(OmegaConf.load(path / ".hydra" / "config.yaml"), resolve=False)
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    status, reason = "unfinished", ""
    run = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
    if run.get("state") == "failed":  # run.json: training/lifecycle.py
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
    hydra_cfg = OmegaConf.load(path).hydra
    if not str(hydra_cfg.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return []  # a search (hparams_search=...) proposes its trials as it goes: none is planned up front
    params = _sweep_params(hydra_cfg.sweeper)
    cli = list(hydra_cfg.overrides.task)
    parsed = OverridesParser.create().parse_overrides([*(f"{k}={v}" for k, v in params.items()), *cli])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _sweep_params(sweeper) -> dict:
    """The sweeper's params; a paper sweep's ``${tanet.sweep:NAME}`` is read from paper.py directly, so
    the report needs no resolver registered (resolvers belong to the applications)."""
    raw = OmegaConf.to_container(sweeper, resolve=False).get("params") or {}
    if isinstance(raw, str):
        match = re.fullmatch(r"\$\{tanet\.sweep:\s*([\w-]+)\s*\}", raw)
        if not match:
            raise ValueError(f"hydra.sweeper.params={raw!r}: not a paper sweep reference")
        return sweep_params(match.group(1))
    return OmegaConf.to_container(sweeper, resolve=True).get("params") or {}


def _point(overrides: list[str]) -> tuple[str, ...]:
    """A job's sweep point: ckpt_path=last (the launch that finished a stopped sweep) is not part of it."""
    return tuple(sorted(o for o in overrides if not o.startswith("ckpt_path=")))


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


# --- split fingerprints (training/fingerprints.py): which test videos each number is of ---
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


def plot(rows: list[Row], experiment: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paper = TABLES[experiment].numbers if experiment in TABLES else {}
    names = [r.setting for r in rows]
    means = [r.mean_std("test/top1")[0] or 0.0 for r in rows]
    errs = [r.mean_std("test/top1")[1] or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(rows) + 2), 4))
    ax.bar(range(len(rows)), means, yerr=errs, capsize=4, color="#4c72b0", label="measured (test top-1)")
    marks = [(i, paper[n][0]) for i, n in enumerate(names) if n in paper]
    if marks:
        ax.scatter(*zip(*marks), color="#dd8452", marker="D", zorder=3, label="paper top-1")
    for i, r in enumerate(rows):
        if r.status != "done":
            ax.annotate(r.status.split(",")[-1].strip(), (i, 1), ha="center", fontsize=7, rotation=90)
    ax.set_xticks(range(len(rows)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(TABLES[experiment].title if experiment in TABLES else experiment, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def data_label(jobs: list[Job]) -> str:
    data = jobs[0].cfg.get("data", {})
    fmt_ = data.get("format", "?")
    model = jobs[0].cfg.get("model", {})
    return f"data format `{fmt_}`, backbone `{model.get('backbone', '?')}`, {data.get('num_frames', '?')} frames"


def report(sweep_dir: Path, page: Path | None = None) -> Path:
    jobs = collect(sweep_dir)
    experiment = experiment_of(jobs)
    rows = group_rows(jobs, experiment)
    table = table_markdown(rows, experiment)
    title = TABLES[experiment].title if experiment in TABLES else f"Sweep `{experiment}`"
    md = (f"# {title}\n\nSweep: `{sweep_dir}` ({len(jobs)} jobs; {data_label(jobs)}).\n"
          f"Mean over seeds ± sample std where several seeds ran; top-1/top-5 on the test split, % .\n\n"
          f"{table}\n\n![top-1 per setting](report.png)\n")
    (sweep_dir / "report.md").write_text(md)
    write_csv(rows, sweep_dir / "report.csv")
    plot(rows, experiment, sweep_dir / "report.png")
    spec = wandb_report.definition(jobs, experiment, title, table, sweep_dir)
    if spec is not None:
        wandb_report.write(sweep_dir, spec)
    if page is not None:
        write_page(page, experiment, measured=(table, data_label(jobs), sweep_dir))
    return sweep_dir / "report.md"


def write_page(page: Path, experiment: str, measured: tuple[str, str, Path] | None = None) -> None:
    """experiments/NAME.md: the command, the paper's numbers, and what this project measured."""
    page.parent.mkdir(parents=True, exist_ok=True)
    if experiment in TABLES:
        t = TABLES[experiment]
        paper = "\n".join(["| setting | top-1 | top-5 |", "|---|---|---|",
                           *(f"| {k} | {a:.2f} | {b:.2f} |" for k, (a, b) in t.numbers.items())])
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
    text = (f"# {title}\n\n## Reproduce\n\n```bash\n{command}                      # the paper's recipe "
            f"(needs the dataset, GPUs)\n{command} +preset=synthetic    # {synthetic}{note}\n"
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
        table, label, sweep_dir = measured
        text += (f"Full-data run: not yet run.\n\nSynthetic motion data on CPU ({label}; generated by "
                 f"`python -m tanet_lightning.report {sweep_dir.name}`). The synthetic task is not Kinetics: "
                 f"compare settings with each other, not with the paper's numbers.\n\n{table}\n")
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
