"""The tutorials in docs/tutorials run top to bottom without an error, each within its budget.

Each ``NN-name.md`` is a Jupytext (MyST markdown) notebook: it is converted with ``jupytext``
and executed with ``nbclient`` on an IPython kernel of this Python, with matplotlib's Agg
backend, from the tutorials' folder. A cell that raises fails the test with its traceback.
The wall time of each notebook is printed at the end of the run.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

FOLDER = Path(__file__).resolve().parents[1] / "docs" / "tutorials"
TUTORIALS = sorted(FOLDER.glob("[0-9][0-9]-*.md"))
BUDGET_S = 60  # each notebook, on 2 cores
LIMIT_S = 2 * BUDGET_S  # what fails the test: the budget with room for a loaded machine
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def report_times(request):
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not TIMES:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for name, seconds in TIMES.items():
            reporter.write_line(f"tutorial {name}: {seconds:.1f} s (budget {BUDGET_S} s)")


def test_there_are_tutorials():
    assert [p.name[:2] for p in TUTORIALS] == sorted({p.name[:2] for p in TUTORIALS})
    assert len(TUTORIALS) >= 3


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(path)
    assert notebook.metadata["jupytext"]["text_representation"]["format_name"] == "myst"
    client = nbclient.NotebookClient(notebook, timeout=LIMIT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(FOLDER)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    TIMES[path.stem] = seconds
    assert seconds < LIMIT_S, f"{path.name} took {seconds:.0f} s (budget {BUDGET_S} s)"
