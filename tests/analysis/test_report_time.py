"""The sweep report shows the temporal-reliance diagnostic's columns (``+diagnose=time``) when jobs logged them."""

from __future__ import annotations

import csv
from pathlib import Path

from tanet_lightning.analysis.report import Job, Row, table_markdown, write_csv
from tanet_lightning.training.diagnose import metric_names


def job(name: str, metrics: dict[str, float] | None = None) -> Job:
    return Job(Path(name), {}, {}, {"test/top1": 0.9, **(metrics or {})}, "done")


def test_time_columns_appear_only_when_logged(tmp_path):
    plain = [Row("TANet", [job("a")])]
    assert "reversed" not in table_markdown(plain, "sweep")

    zeros = dict.fromkeys(metric_names(), 0.0)
    tanet = [job(f"s{seed}", {**zeros, "time/top1_reversed": r, "time/changed_reversed": 0.8})
             for seed, r in ((0, 0.1), (1, 0.2))]
    rows = [Row("TANet", tanet), Row("C2D", [job("c", {"time/top1_reversed": 0.9})])]
    md = table_markdown(rows, "sweep")
    head = md.splitlines()[0]
    assert "| top-1 reversed | top-1 shuffled | top-1 frozen | changed reversed |" in head
    assert "top-1 ordered" not in head and "drop" not in head  # the top-1 column; a difference
    tanet_line = md.splitlines()[2]
    assert "| 15.0 ± 7.1 | 0.0 ± 0.0 | 0.0 ± 0.0 | 80.0 ± 0.0 |" in tanet_line  # mean ± std over seeds, in %
    assert "| 90.0 | – |" in md.splitlines()[3]  # C2D logged one key: the others are empty

    write_csv(rows, tmp_path / "r.csv")
    header, *lines = list(csv.reader((tmp_path / "r.csv").open()))
    assert header[-len(metric_names()):] == metric_names()
    assert lines[0][header.index("time/drop_reversed")] == "0.0"
