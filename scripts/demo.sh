#!/usr/bin/env bash
# Install metrix on a fresh Python 3.11 and run its demo.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[plot]"
python -m metrix demo "$@"
