#!/usr/bin/env bash
# Install metrix on a fresh Python 3.11 and run its demo (`metrix demo`: trains a small Flax MLP
# on scikit-learn's digits and evaluates it on 8 simulated CPU devices; plots and a JSON report
# go to ./metrix-demo, or to the directory given with --out).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh  # the active venv, or ./.venv
python -m pip install --quiet --upgrade pip
# The [demo] extra adds matplotlib, scikit-learn (the digits data) and optax (training).
python -m pip install --quiet -e ".[demo]"
python -m metrix demo "$@"
