"""A run directory and the process that writes it: its life (``lifecycle.py``: run.json, the run lock, what a
command does in an existing directory), stop signals (``signals.py``), the Lightning callbacks that keep it
resumable (``callbacks.py``), the split fingerprints (``fingerprints.py``), loggers, the files a run leaves
(``outputs.py``) and the objects it is built from (``build.py``: the DataModule, callbacks, loggers, seeding)."""
