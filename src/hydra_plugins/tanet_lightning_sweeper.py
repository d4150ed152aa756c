"""Hydra instantiates sweepers only from the ``hydra_plugins`` namespace: this is the entry of the project's
Optuna sweeper (conf/hparams_search/tanet_optuna.yaml), whose code is ``tanet_lightning.search``. Hydra's
plugin scan imports this module for every application, so it imports nothing heavy (nor Optuna, an
optional extra) until a search is launched."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class ResumingOptunaSweeper(Sweeper):
    """Hydra's OptunaSweeper, whose finishing launch (``ckpt_path=last``) also finishes the stopped trials."""

    def __init__(self, **config: Any) -> None:
        from tanet_lightning.search import ResumingOptuna

        self.sweeper = ResumingOptuna(**config)

    def setup(self, **kwargs: Any) -> None:
        self.sweeper.setup(**kwargs)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
