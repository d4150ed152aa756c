"""``python -m tanet_lightning.report``: a sweep's local report (and W&B report definition).

A thin entry point: the code is in ``tanet_lightning.analysis.report``.
"""

from .analysis.report import main

if __name__ == "__main__":
    main()
