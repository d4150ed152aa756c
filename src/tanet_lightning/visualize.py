"""``python -m tanet_lightning.visualize``: TAM's importance maps and kernels for a checkpoint.

A thin entry point: the code is in ``tanet_lightning.analysis.visualize``.
"""

from .analysis.visualize import main

if __name__ == "__main__":
    main()
