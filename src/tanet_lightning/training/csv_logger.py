"""Lightning's CSVLogger, fixed for runs whose phases write from different processes.

Under ``ddp_spawn`` (``trainer=ddp_cpu``) fit and test each run in freshly spawned processes that get
a pickled copy of the logger made before fit, so the test phase's writer does not know the columns
fit wrote into ``metrics.csv``: Lightning's writer then rewrites the file with the test columns only
and fails ("dict contains fields not in fieldnames"). This writer reads the file's header first.
"""

from __future__ import annotations

import csv

from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.pytorch.loggers import CSVLogger as _CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _HeaderAwareWriter(ExperimentWriter):
    def _record_new_keys(self) -> set[str]:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                header = next(csv.reader(f), [])
            self.metrics_keys.extend(k for k in header if k not in self.metrics_keys)
        return super()._record_new_keys()


class CSVLogger(_CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HeaderAwareWriter(log_dir=self.log_dir)
        return self._experiment
