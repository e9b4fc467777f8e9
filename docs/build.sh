#!/usr/bin/env bash
# Build the documentation site into site/ (after `pip install -e ".[docs]"`), executing every
# tutorial and guide, with warnings as errors. `bash docs/build.sh OUT` builds into OUT instead.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-site}"
unset MPLBACKEND  # the kernels' inline backend keeps every figure for the page
doctrees="$(mktemp -d)"
trap 'rm -rf "$doctrees"' EXIT
python -m sphinx -b html -W --keep-going -q -E -d "$doctrees" docs "$out"
echo "built $out/index.html"
