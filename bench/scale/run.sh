#!/usr/bin/env bash
# Datasets larger than memory (bench/scale/measure.py): memory and speed of codec training, latent caching and
# evaluation at 3k, 30k and 100k images of 256², then the capacity plan (bench/scale/plan.py), the
# prepared-data storage ways (bench/scale/storage.py) and the README
# numbers (bench/summary.py). Extra args go to measure.py (e.g. --sizes 3000 30000).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
.venv/bin/python bench/scale/measure.py "$@"
.venv/bin/python bench/scale/plan.py
.venv/bin/python bench/scale/storage.py
.venv/bin/python bench/summary.py
