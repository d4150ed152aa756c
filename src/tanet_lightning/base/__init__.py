"""The bottom floor: what every other layer may use and nothing here imports from above.

``errors``: the user-error family and the one handler every entry point shares;
``files``: the one atomic write (``atomic_path``); ``locks``: the one cross-process lock (``hold``).
"""
