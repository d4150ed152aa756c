"""Where the Hydra configs live, and the few OmegaConf resolvers they use.

Application layer: importing it registers the resolvers (the applications and their Hydra callbacks
import it; nothing below them registers resolvers or reads the command line)."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf, open_dict

from ..analysis.paper import sweep_params
from ..base.errors import ConfigError
from ..runs.lifecycle import checkpoint_label, evaluated


def config_dir() -> str:
    """``conf/`` inside an installed wheel, else the repository's ``conf/`` (editable or source checkout)."""
    packaged = Path(__file__).parents[1] / "conf"
    if packaged.is_dir():
        return str(packaged)
    source = Path(__file__).resolve().parents[3] / "conf"
    if source.is_dir():
        return str(source)
    raise FileNotFoundError(f"Hydra configs not found in {packaged} or {source}; reinstall the package")


def compose_app(app: str, overrides: Sequence[str], output_dir: str | os.PathLike | None = None) -> DictConfig:
    """``app``'s config as ``python -m tanet_lightning.<app> OVERRIDES`` composes it, for an application that
    runs another's code path (zoo runs eval's): the run directory is ``output_dir``, else the one Hydra would
    make (``hydra.run.dir``); nothing is created."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(app, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # `hydra:` interpolations (the run name) resolve
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(output_dir or cfg.hydra.run.dir).resolve())
        del cfg.hydra
    return cfg


def run_name(overrides: str, seed, *, _root_: DictConfig | None = None) -> str:
    """A readable run name that is also a plain Hydra value: the overrides (or 'default'), the checkpoint
    a run evaluates (eval, train=false: ``ckpt_path`` is left out of the overrides, but two checkpoints
    are two runs) and the seed.

    Hydra joins the overrides with "-" and "__" (conf/hydra/default.yaml); list and dict values are
    flattened (``model.stages=[res4,res5]`` -> ``model.stages-res4+res5``), so a checkpoint path can be
    passed back as ``ckpt_path=...`` without quoting. Long names keep a hash of the whole.
    """
    name = overrides.replace("/", ".").replace(",", "+").replace("=", "-").replace(":", "")
    name = re.sub(r"[\[\]{}'\" ]", "", name)
    name = re.sub(r"[^\w.+\-@%]", "_", name) or "default"
    if len(name) > 160:
        name = f"{name[:150]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    tested = evaluated(_root_) if _root_ is not None else None
    if tested is not None:
        name += f"__ckpt-{checkpoint_label(tested)}"
    return f"{name}__seed-{seed}"


class LaunchDirectory(HydraCallback):
    """``hydra.callbacks``: every relative path of a config (``paths.*``, ``data.root``, annotation lists,
    ``ckpt_path``, ``model.init_from``) is relative to the launch directory, also with
    ``hydra.job.chdir=true``: each job runs there (its run directory is ``paths.output_dir``, which every
    application writes to by name), so that relative paths resolve as with the default."""

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        launch = HydraConfig.get().runtime.cwd
        if launch and os.getcwd() != launch:
            os.chdir(launch)  # Hydra returns to it at the job's end anyway


def wandb_offline() -> bool:
    """Offline unless an API key is configured; an explicit WANDB_MODE (offline/disabled/online) wins."""
    mode = os.environ.get("WANDB_MODE")
    if mode:  # explicit: offline=True would turn WANDB_MODE=disabled into an offline run
        return mode in ("offline", "dryrun")
    return not (os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").is_file()
                and "api.wandb.ai" in (Path.home() / ".netrc").read_text(errors="ignore"))


def search_seed(seed, storage: str):
    """The Optuna sampler's seed for this launch: ``seed`` plus the trials the study already holds. A
    second launch into a sweep directory continues the study; with the plain seed its sampler would
    propose the first launch's points again (their run directories hold finished runs), while this stays
    reproducible: the same seed and the same history give the same proposals."""
    if seed is None:
        return None
    path = Path(storage.removeprefix("sqlite:///"))
    if not path.is_file():
        return int(seed)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            (done,) = db.execute("SELECT COUNT(*) FROM trials").fetchone()
        except sqlite3.OperationalError:  # a study storage created but never written
            done = 0
    return int(seed) + int(done)


def register_resolvers() -> None:
    # the launch directory, resolvable at any time (Hydra's `hydra:runtime.cwd` is unset while the
    # sweeper resolves hydra.sweep.dir); Lightning's DDP launcher re-executes in the same directory
    OmegaConf.register_new_resolver("tanet.cwd", os.getcwd, replace=True)
    OmegaConf.register_new_resolver("tanet.run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("tanet.wandb_offline", wandb_offline, replace=True)
    # a paper sweep's jobs (conf/experiment/*.yaml), declared once beside its paper table
    OmegaConf.register_new_resolver("tanet.sweep", sweep_params, replace=True)
    # a value an experiment requires (`???` would not survive the merge over a group's default)
    OmegaConf.register_new_resolver("tanet.required", required, replace=True)
    OmegaConf.register_new_resolver("tanet.search_seed", search_seed, replace=True)  # hparams_search=...


def required(key: str, by: str, what: str):
    raise ConfigError(f"{key} is required by {by}: give {key}={what}")


register_resolvers()
