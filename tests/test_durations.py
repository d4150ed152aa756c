"""The test order comes from measured durations (tests/durations.py), in a session of its own (pytester):
nothing measured keeps the collection order, a measured long unit goes first, a partial run updates its own
tests only, and under xdist the controller stores what the workers measured."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from durations import KEY

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
CONFTEST = "from durations import Durations\n\n\ndef pytest_configure(config):\n" \
           "    config.pluginmanager.register(Durations(), 'tanet-durations')\n"


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(TESTS))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a="def test_quick():\n    pass\n",
                        test_b="import time\n\n\ndef test_long():\n    time.sleep(0.3)\n",
                        test_c="class TestC:\n    def test_one(self):\n        pass\n")
    return pytester


def order(pytester) -> list[str]:
    result = pytester.runpytest("--collect-only", "-q")
    return [line.split("::")[0] for line in result.outlines if "::" in line]


def stored(pytester) -> dict[str, float]:
    return json.loads((pytester.path / ".pytest_cache" / "v" / KEY).read_text())


def test_nothing_measured_keeps_the_order_then_the_longest_unit_goes_first(suite):
    assert order(suite) == ["test_a.py", "test_b.py", "test_c.py"]
    suite.runpytest().assert_outcomes(passed=3)
    assert stored(suite)["test_b.py::test_long"] >= 0.3
    assert order(suite) == ["test_b.py", "test_a.py", "test_c.py"]


def test_a_partial_run_updates_its_own_tests_only(suite):
    suite.runpytest().assert_outcomes(passed=3)
    suite.runpytest("-k", "quick").assert_outcomes(passed=1)
    assert set(stored(suite)) == {"test_a.py::test_quick", "test_b.py::test_long", "test_c.py::TestC::test_one"}
    assert order(suite)[0] == "test_b.py"


def test_without_the_cache_the_order_is_the_collections(suite):
    suite.runpytest().assert_outcomes(passed=3)
    result = suite.runpytest("-p", "no:cacheprovider", "--collect-only", "-q")
    assert [line.split("::")[0] for line in result.outlines if "::" in line] == ["test_a.py", "test_b.py", "test_c.py"]


@pytest.mark.heavy  # two xdist sessions of two worker processes
def test_under_xdist_the_controller_stores_what_the_workers_measured(suite):
    xdist = ("-n", "2", "--dist", "loadscope", "--no-loadscope-reorder")
    suite.runpytest_subprocess(*xdist).assert_outcomes(passed=3)
    assert stored(suite)["test_b.py::test_long"] >= 0.3 and len(stored(suite)) == 3
    assert order(suite)[0] == "test_b.py"
    # measured, every worker sorts the same way (xdist stops a session whose workers collected differently)
    suite.runpytest_subprocess(*xdist).assert_outcomes(passed=3)
