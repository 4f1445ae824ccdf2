# Sourced by scripts/demo.sh and scripts/test.sh: use the active virtual environment, or
# create ./.venv (first run) and use it, so nothing is installed into a system interpreter.
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
