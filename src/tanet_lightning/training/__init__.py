"""Training itself: the LightningModule (``module.py``), SyncBN (``sync_bn.py``) and the time diagnostic
(``diagnose.py``)."""
