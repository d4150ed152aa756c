"""Test order from measured durations (registered by tests/conftest.py): the longest units run first.

Under ``--dist loadscope --no-loadscope-reorder`` (`make test`) each xdist worker takes the next unit (a test
class, else a file: what loadscope keeps together) as it frees up, so the long units must start first and the
short ones fill the end. How long a unit takes is measured, not written down: every session stores each test's
seconds (setup + call + teardown) in pytest's cache (``.pytest_cache/``, not committed: each machine measures
its own), and the next session's collection sorts units by the sum over their tests. A test never measured
counts 0 s; units are compared to a tenth of a second; with no cache at all (a fresh clone,
``-p no:cacheprovider``) the order is the collection's.

Robust under xdist: every worker reads the same stored file at collection, so all collect the same order; only
the process that runs the session (the xdist controller, which receives every worker's reports) writes it, at the
end, merged into what earlier sessions measured (a ``-k`` run updates its own tests only). A session cut short
(Ctrl-C) stores nothing; tests whose file is gone are dropped.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

KEY = "tanet/durations"  # pytest's cache key: test id -> seconds


def unit(item: pytest.Item) -> str:
    """What ``--dist loadscope`` keeps together: the test's class, else its file."""
    return item.nodeid.rsplit("::", 1)[0] if item.cls else item.nodeid.split("::")[0]


class Durations:
    def __init__(self) -> None:
        self.measured: dict[str, float] = defaultdict(float)

    @staticmethod
    def stored(config: pytest.Config) -> dict[str, float]:
        cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
        stored = cache.get(KEY, {}) if cache is not None else {}
        return stored if isinstance(stored, dict) else {}

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        seconds = self.stored(config)
        total: dict[str, float] = defaultdict(float)
        for item in items:
            total[unit(item)] += float(seconds.get(item.nodeid, 0.0))
        # to a tenth of a second: units that short gain nothing from reordering, and their measured
        # noise (1 ms vs 3 ms) would shuffle them from session to session. Stable: within a unit, and
        # among equals, file order
        items.sort(key=lambda item: -round(total[unit(item)], 1))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.measured[report.nodeid] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        cache = getattr(session.config, "cache", None)
        worker = hasattr(session.config, "workerinput")  # an xdist worker: its controller stores
        if cache is None or worker or not self.measured or exitstatus == pytest.ExitCode.INTERRUPTED:
            return
        root = session.config.rootpath
        kept = {k: v for k, v in self.stored(session.config).items() if (root / k.split("::")[0]).is_file()}
        cache.set(KEY, {**kept, **{k: round(v, 3) for k, v in self.measured.items()}})
