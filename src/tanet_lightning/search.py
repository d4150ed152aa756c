"""The Optuna search (``hparams_search=tanet_optuna``): Hydra's Optuna sweeper, plus what finishes a stopped one.

A stopped search (SIGTERM, Ctrl-C) leaves its current trial RUNNING in the study and its run
``interrupted``. The finishing command (the same command + ``hydra.sweep.dir=<its directory>
ckpt_path=last``, sweep.py prints it) first launches every RUNNING trial again with its own sampled
values: the same overrides name the same run directory, and ``ckpt_path=last`` resumes its run there;
the value the job returns is told to the study for that trial (a job that fails again marks the trial
FAIL, and says so). Then it samples only what the stopped launch still owed: each launch records in the
study how many trials it should leave there (``tanet:target_trials``). A launch without ``ckpt_path=last``
continues the study as Hydra's sweeper does: ``n_trials`` more trials (and says which stopped ones it
leaves unfinished).
"""

from __future__ import annotations

import logging
import math

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger("tanet_lightning")

TARGET = "tanet:target_trials"  # study user attribute: the trials a launch should leave in the study


class ResumingOptuna(OptunaSweeperImpl):
    def sweep(self, arguments: list[str]) -> None:
        study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                    directions=self._get_directions(), load_if_exists=True)
        stopped = [t for t in study.trials if t.state == TrialState.RUNNING]
        if "ckpt_path=last" not in arguments:
            if stopped:
                log.warning("the study holds %d stopped trial(s) (%s), left as they are: the stopped launch's "
                            "finishing command (+ ckpt_path=last) finishes them", len(stopped),
                            ", ".join(str(t.number) for t in stopped))
            study.set_user_attr(TARGET, len(study.trials) + self.n_trials)
            return super().sweep(arguments)
        target = int(study.user_attrs.get(TARGET, len(study.trials) + self.n_trials))
        self._finish(study, stopped, arguments)
        ended = sum(t.state.is_finished() for t in study.trials)
        self.n_trials = max(0, target - ended)
        log.info("the study holds %d ended trial(s) of the %d this search was launched for: %d more", ended,
                 target, self.n_trials)
        return super().sweep(arguments)

    def _finish(self, study: optuna.Study, stopped: list[FrozenTrial], arguments: list[str]) -> None:
        """Launch each stopped trial's values again (its run resumes) and tell the study how it ended."""
        if not stopped:
            return
        _, fixed = create_params_from_overrides([*self._parse_sweeper_params_config(), *arguments])
        overrides = [tuple(f"{k}={v}" for k, v in {**t.params, **fixed}.items()) for t in stopped]
        log.info("finishing the stopped trial(s) %s of the study", ", ".join(str(t.number) for t in stopped))
        returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        self.job_idx += len(returns)
        for trial, ret in zip(stopped, returns):
            value = ret.return_value  # a job stopped again raises here: the sweep stops, the trial stays RUNNING
            try:
                values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
            except (TypeError, ValueError):
                values = None
            if values is None or not all(map(math.isfinite, values)):
                study.tell(trial.number, state=TrialState.FAIL)
                log.error("trial %d did not finish (its run.json says why): marked failed in the study",
                          trial.number)
            else:
                study.tell(trial.number, values)
                log.info("trial %d finished: %s", trial.number, values)
