"""Sphinx configuration of the cnnumpy documentation site (built by ``bash docs/build.sh``).

Sphinx with MyST-NB reads the tutorials and guides as they are kept (Jupytext MyST markdown
notebooks) and executes them; autodoc with napoleon reads the Google-style docstrings. Nothing
is fetched from the network when the site is built or viewed: see ``docs/README.md``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from sphinx.util import logging as sphinx_logging

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
# The notebooks' kernels inherit the environment: with MPLBACKEND=Agg they would keep no figure,
# so they get IPython's inline backend (headless too), which puts each figure on the page.
os.environ.pop("MPLBACKEND", None)

project = "cnnumpy"
author = "the cnnumpy authors"
copyright = "the cnnumpy authors, MIT licence"  # noqa: A001 (Sphinx's name)

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
exclude_patterns = ["_build", "build.sh", "conf.py", "**/.ipynb_checkpoints"]
root_doc = "index"
suppress_warnings = ["myst.header"]  # the README's headings start at level 1, then 3 in places

# Notebooks: executed on every build, a cell that raises fails it.
nb_execution_mode = "force"
nb_execution_timeout = 240
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_ipywidgets_js = {}  # no widgets here; the default loads require.js from a CDN
nb_merge_streams = True
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# API reference from the docstrings.
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Shape"]  # rendered as written, under its own heading

# Offline: a theme whose CSS loads no web font, and no MathJax (no page uses math).
html_theme = "furo"
html_title = "cnnumpy"
html_static_path: list[str] = []
mathjax_path = "mathjax-is-not-bundled.js"  # a page with math fails the build (below)

# Docstring warnings in modules that other work in progress is rewriting: listed, not fatal.
# Each entry is a path under src/cnnumpy; remove it once that file's docstrings build cleanly.
TOLERATED_WARNINGS_IN = ("__init__.py", "model.py", "graph_model.py", "io.py", "training.py",
                         "onnx.py", "torch/")


TOLERATED: list[str] = []


class _TolerateWarnings(logging.Filter):
    """Keep warnings located in ``TOLERATED_WARNINGS_IN`` from failing the build; list them."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = f"{getattr(record, 'location', '')} {record.getMessage()}"
        if any(f"/cnnumpy/{name}" in text for name in TOLERATED_WARNINGS_IN):
            TOLERATED.append(text.strip())
            return False
        return True


def _report_tolerated(app, exception) -> None:
    if TOLERATED:
        print(f"{len(TOLERATED)} tolerated docstring warnings (TOLERATED_WARNINGS_IN in conf.py):")
        for line in TOLERATED:
            print(f"  {line}")


def _refuse_math(app, pagename, templatename, context, doctree) -> None:
    if context.get("has_maths_elements"):
        sphinx_logging.getLogger(__name__).warning(
            "%s: has math, which needs MathJax; this site bundles none and loads nothing "
            "remote", pagename)


def setup(app) -> None:
    for handler in logging.getLogger("sphinx").handlers:
        if handler.level >= logging.WARNING:
            handler.filters.insert(0, _TolerateWarnings())
    app.connect("build-finished", _report_tolerated)
    app.connect("html-page-context", _refuse_math)
