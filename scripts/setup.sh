#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv/ and install taskcodec into it.
# Reruns are fast: nothing is installed again unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "taskcodec: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.taskcodec-install
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "taskcodec: installing dependencies into .venv (first run takes a few minutes)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch first, pinned, so pip takes the local build instead of downloading another one
    .venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 "numpy<2"
    .venv/bin/python -m pip install --quiet -e ".[test]"
    echo "$wanted" > "$stamp"
fi
