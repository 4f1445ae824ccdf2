#!/usr/bin/env bash
# Install metrix on a fresh Python 3.11 and run its demo (`metrix demo`: trains a small Flax MLP
# on scikit-learn's digits and evaluates it on 8 simulated CPU devices; plots and a JSON report
# go to ./metrix-demo, or to the directory given with --out).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
# The demo also needs scikit-learn (the digits data) and optax (training); metrix itself does not.
python -m pip install --quiet -e ".[plot]" scikit-learn optax
python -m metrix demo "$@"
