"""Temporal modules, one family per file, written like timm's ``layers/``.

Every module maps a frame batch ``(N*T, C, H, W)`` to a tensor of the same shape, where the rows are
grouped per video, frame-major inside a video (row ``n*T + t``). ``T`` is a constructor argument
(``num_frames``), never guessed from the input: a clip of another length must be rejected where the clip
is still 5-D (``VideoClassifier``), because ``(2*8)`` rows and ``(1*16)`` rows look the same here.

Modules placed on a feature map share one signature, ``factory(channels, num_frames, **kwargs)``, so the
block-insertion utility (``insertion.py``) can place any of them anywhere. Modules that replace a block's
3x3 conv (placement ``replace_conv``) take the conv instead, ``factory(conv, num_frames, **kwargs)``.

- ``checks.py``: argument checks (fail at construction, name the argument and the allowed values)
- ``aggregation.py``: the temporal aggregation op of TAM and TEINet (custom op, backward, FLOPs, ONNX twin)
- ``tam.py``: TAM and its Table 2 variants; ``baselines.py``: Table 2's other modules
- ``tada.py``, ``tea.py``, ``gst.py``: TAda2D, TEA, GST (placement ``replace_conv``)
- ``st_adapter.py``, ``tokshift.py``, ``aim.py``: ST-Adapter, TokShift, AIM, for (frozen) image ViTs
- ``atm.py``: ATM, the arithmetic temporal module (CNNs and ViTs)
- ``registry.py``: ``TEMPORAL``, one ``TemporalSpec`` per module, and the factories ``create_*``
"""

from .aggregation import plain_aggregation, temporal_aggregate, temporal_aggregate_plain
from .aim import AIMBlock
from .atm import ATM
from .baselines import NonLocalBlock, TEIModule, TemporalAvgPool, TemporalConv, TemporalShift
from .registry import (
    BLOCK_MODULES,
    CONV_MODULES,
    PLACEMENTS,
    TAM_FAMILY,
    TEMPORAL,
    TEMPORAL_MODULES,
    TOKEN_MODULES,
    Reported,
    TemporalSpec,
    create_block_temporal,
    create_conv_temporal,
    create_temporal,
    temporal_spec,
)
from .st_adapter import STAdapter
from .tam import (
    TAM,
    GlobalBranch,
    LocalBranch,
    SEGate,
    TemporalAdaptiveModule,
    tam_global_only,
    tam_global_se,
    tam_local_only,
    tanet_r,
)
from .tokshift import TokenShift

__all__ = [
    "TAM",
    "TemporalAdaptiveModule",
    "LocalBranch",
    "GlobalBranch",
    "SEGate",
    "tam_global_only",
    "tam_local_only",
    "tam_global_se",
    "tanet_r",
    "TemporalShift",
    "TemporalAvgPool",
    "TemporalConv",
    "TEIModule",
    "NonLocalBlock",
    "STAdapter",
    "TokenShift",
    "AIMBlock",
    "ATM",
    "temporal_aggregate",
    "temporal_aggregate_plain",
    "plain_aggregation",
    "TEMPORAL",
    "TEMPORAL_MODULES",
    "TOKEN_MODULES",
    "CONV_MODULES",
    "BLOCK_MODULES",
    "TAM_FAMILY",
    "PLACEMENTS",
    "Reported",
    "TemporalSpec",
    "temporal_spec",
    "create_temporal",
    "create_conv_temporal",
    "create_block_temporal",
]
