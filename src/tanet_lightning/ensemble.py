"""``python -m tanet_lightning.ensemble``: TANet-En: ensemble of eval score files.

A thin entry point: the code is in ``tanet_lightning.analysis.ensemble``.
"""

from .analysis.ensemble import main

if __name__ == "__main__":
    main()
