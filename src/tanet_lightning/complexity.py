"""``python -m tanet_lightning.complexity``: the paper's Table 2 FLOPs/params, measured.

A thin entry point: the code is in ``tanet_lightning.analysis.complexity``.
"""

from .analysis.complexity import main

if __name__ == "__main__":
    main()
