"""The report's rows and their renderings: one row per setting of a sweep (its jobs over seeds), the
markdown table with the paper's numbers beside ours, the overlap of the settings' intervals, the summary
over facets, the CSV of every job, the picture (report.png) and the words that say what ran."""

from __future__ import annotations

import csv
import json
import statistics
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..training.diagnose import metric_names
from .paper import ARCH_NAMES, TABLES
from .sweep_jobs import STATES, Job, cfg_value

METRICS = ("test/top1", "test/top5", "test/mean_class_acc", "val/top1_best")


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
    # model.freeze_backbone runs: their trained parameters beside top-1 (a column only where some row froze)
    frozen = any(r.first("model/params_trained") not in (None, r.first("model/params")) for r in rows)
    head = ["setting", "top-1", *(["trained / params (M)"] if frozen else []), "top-5", "mean class acc",
            "paper top-1", "paper top-5", "GFLOPs", "params (M)", *time.values(), "test data", "seeds", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p1, p5 = paper.get(r.setting, (None, None))
        flops, params = r.first("model/gflops"), r.first("model/params")
        trained, m = r.first("model/params_trained"), (lambda n: fmt(n / 1e6 if n else None, digits=3))
        lines.append("| " + " | ".join([
            r.setting, fmt(*r.mean_std("test/top1")), *([f"{m(trained)} / {m(params)}"] if frozen else []),
            fmt(*r.mean_std("test/top5")),
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


# --- what ran, facets, intervals, the picture ---------------------------------------------------------------
DATASETS = {"kinetics_csv": "Kinetics-400", "sthv1_csv": "Something-Something V1",
            "sthv2_json": "Something-Something V2"}
BLIND_LEVEL = 50.0  # synthetic data: 4 time-reversal pairs; an order-blind model gets the pair, then a coin flip


def data_name(job: Job) -> str:
    """The data a job ran on, in words: the synthetic task, the paper's dataset, else the format."""
    fmt_ = cfg_value(job, "data.format", "?")
    if fmt_ == "synthetic":
        return f"synthetic {cfg_value(job, 'data.synthetic.task', 'motion')} videos"
    return DATASETS.get(fmt_, f"data format {fmt_}")


def setting_words(jobs: list[Job]) -> str:
    """'synthetic motion videos, ResNet-18, 8 frames, 32 px': what every job of a sweep (or facet) shares."""
    def one(key, default="?"):
        values = sorted({str(cfg_value(j, key, default)) for j in jobs})
        return values[0] if len(values) == 1 else "/".join(values)

    tasks = sorted({str(cfg_value(j, "data.synthetic.task", "motion")) for j in jobs
                    if cfg_value(j, "data.format") == "synthetic"})
    data = sorted({data_name(j) for j in jobs if cfg_value(j, "data.format") != "synthetic"})
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
    seeds = len({j.overrides.get("seed", cfg_value(j, "seed")) for j in jobs})
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
    try:
        run = json.loads((job.path / "run.json").read_text())
        return (datetime.fromisoformat(run["ended"]) - datetime.fromisoformat(run["started"])).total_seconds()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cost_words(jobs: list[Job]) -> str:
    seconds = [s for s in map(job_seconds, jobs) if s is not None]
    if not seconds:
        return ""
    threads = sorted({"PyTorch's default" if cfg_value(j, "torch_threads") is None
                      else str(cfg_value(j, "torch_threads")) for j in jobs})
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
# ---


def data_label(jobs: list[Job]) -> str:
    data = jobs[0].cfg.get("data", {})
    fmt_ = data.get("format", "?")
    model = jobs[0].cfg.get("model", {})
    return f"data format `{fmt_}`, backbone `{model.get('backbone', '?')}`, {data.get('num_frames', '?')} frames"
