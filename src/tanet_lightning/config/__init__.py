"""What a config may hold and how it is composed: where the Hydra configs live and their resolvers
(``compose.py``; importing this package registers them), the typed schema of every application
(``schema/``: ``validate(cfg, app)``) and the data-independent checks run before a run starts
(``checks.py``). The applications import it; nothing below them reads the command line."""

from .compose import (
                      LaunchDirectory,
                      compose_app,
                      config_dir,
                      register_resolvers,
                      required,
                      run_name,
                      search_seed,
                      wandb_offline,
)

__all__ = ["LaunchDirectory", "compose_app", "config_dir", "register_resolvers", "required", "run_name", "search_seed",
           "wandb_offline"]
