"""Analysis: what the project measures and shows, apart from training.

``paper`` (the paper's tables and each experiment's sweep, declared once), ``complexity`` (Table 2
FLOPs/params), ``report`` (a sweep's local report, from ``sweep_jobs`` which reads the sweep, ``rows``
which renders its table, CSV and picture, and ``pages`` which writes the experiments pages) and
``wandb_report`` (its W&B report), ``visualize`` (TAM's importance maps and kernels), ``ensemble``
(TANet-En over eval score files). Each command keeps its short name: ``python -m tanet_lightning.report``
etc. are thin entry points into this package.
"""
