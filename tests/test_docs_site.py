"""The documentation site builds (``bash docs/build.sh``: tutorials and guides executed, warnings
as errors) and works offline: no built page or stylesheet loads a script, stylesheet or font
from the network, and every tutorial, guide and API page is there.

One build per run (about 30 s on 2 cores, most of it executing the notebooks).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

REMOTE = [
    re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//", re.I),
    re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.I),
    re.compile(r"@import\s+(?:url\()?\s*[\"']?(?:https?:)?//", re.I),
    re.compile(r"url\(\s*[\"']?(?:https?:)?//", re.I),
    re.compile(r"<(?:img|iframe|source)\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//", re.I),
]


def remote_references(text: str) -> list[str]:
    """The snippets of ``text`` (HTML, CSS or JS) that would load something over the network.

    A ``<link>`` to a remote page is only a loaded resource when it is a stylesheet, font,
    script or icon; a plain hyperlink (``<a href>``) is not counted.
    """
    found = []
    for pattern in REMOTE:
        for match in pattern.finditer(text):
            snippet = match.group(0)
            if snippet.lower().startswith("<link") and not re.search(
                    r"rel\s*=\s*[\"']?[^\"'>]*(stylesheet|preload|icon|modulepreload|font)",
                    snippet, re.I):
                continue
            found.append(snippet[:120])
    return found


@pytest.mark.parametrize("snippet", [
    '<link rel="stylesheet" href="https://fonts.example/css">',
    '<link href="https://cdn.example/x.woff2" rel="preload" as="font">',
    '<script src="//cdn.example/require.js"></script>',
    "<style>@import url(https://fonts.example/x.css);</style>",
    "@font-face { src: url('https://fonts.example/x.woff2') }",
    '<img src="https://example.org/logo.png">',
])
def test_a_remote_reference_is_found(snippet):
    assert remote_references(snippet)


@pytest.mark.parametrize("snippet", [
    '<a href="https://example.org/">a link</a>',
    '<link rel="canonical" href="https://example.org/">',
    '<script src="_static/local.js"></script>',
    "b { background: url(../_static/x.png) }",
])
def test_a_local_reference_or_a_hyperlink_is_not(snippet):
    assert not remote_references(snippet)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(["bash", str(DOCS / "build.sh"), str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the site build failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_no_page_loads_anything_remote(site):
    offenders = {}
    for path in site.rglob("*"):
        if path.suffix in {".html", ".css", ".js"}:
            found = remote_references(path.read_text(encoding="utf-8", errors="replace"))
            if found:
                offenders[str(path.relative_to(site))] = found
    assert not offenders, f"pages that load from the network: {offenders}"


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (DOCS / folder).glob("*.md") if p.name != "README.md")


@pytest.mark.parametrize("source", _sources("tutorials") + _sources("guides"),
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_each_notebook_page_is_built_and_ran(site, source):
    page = site / source.parent.name / f"{source.stem}.html"
    assert page.is_file(), f"{page} was not built"
    html = page.read_text(encoding="utf-8")
    assert 'class="cell_output' in html, f"{page.name}: no cell output (not executed?)"
    assert "Traceback" not in html


@pytest.mark.parametrize("source", [p for p in _sources("tutorials") + _sources("guides")
                                    if "plt." in p.read_text(encoding="utf-8")],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_page_whose_notebook_draws_shows_its_figures(site, source):
    html = (site / source.parent.name / f"{source.stem}.html").read_text(encoding="utf-8")
    assert "<img" in html and ".png" in html, f"{source.name}: its figures are not on the page"


@pytest.mark.parametrize("source", _sources("guides"), ids=lambda p: p.stem)
def test_every_code_block_of_a_guide_is_executed(source):
    text = source.read_text(encoding="utf-8")
    assert text.startswith("---\njupytext:"), f"{source.name} is not a Jupytext notebook"
    fences = re.findall(r"^```(\S*)", text, re.M)
    not_run = [f for f in fences if f and f not in ("{code-cell}", "text")]
    assert not not_run, f"{source.name}: code blocks the build does not run: {not_run}"


def test_each_api_page_is_built_with_its_module(site):
    for source in sorted((DOCS / "api").glob("*.md")):
        page = site / "api" / f"{source.stem}.html"
        assert page.is_file(), f"{page} was not built"
        modules = re.findall(r"automodule:: ([\w.]+)", source.read_text(encoding="utf-8"))
        html = page.read_text(encoding="utf-8")
        for module in modules:
            assert f'id="module-{module}"' in html, f"{page.name}: {module} is not documented"


def test_every_public_module_has_an_api_page():
    documented = set()
    for source in (DOCS / "api").glob("*.md"):
        documented |= set(re.findall(r"automodule:: ([\w.]+)", source.read_text("utf-8")))
    public = {"cnnumpy"} | {f"cnnumpy.{name}" for name in (
        "layers", "losses", "optimizers", "callbacks", "datasets", "functional", "metrics",
        "initializers", "testing", "onnx", "torch", "serve", "plot", "backend", "models")}
    assert public <= documented, f"no API page for {sorted(public - documented)}"


def test_the_other_pages_are_built(site):
    for name in ("index", "deploy", "security", "distributed", "benchmarks", "benchmarks-log",
                 "api/index", "tutorials/README"):
        assert (site / f"{name}.html").is_file(), f"{name}.html was not built"
    assert "Quickstart" in (site / "index.html").read_text(encoding="utf-8")
