#!/usr/bin/env bash
# The Python package's tests: makes a virtual environment (target/python-venv, or
# $RECADAM_PY_VENV), installs what the tests need (torch, numpy, pytest, transformers, accelerate,
# maturin; torch from PyPI is the CUDA build, about 3 GB, 2.5 minutes the first time), builds and
# installs the package from ./python as a user would (`pip install ./python`), and runs pytest.
# Extra arguments go to pytest. RECADAM_PY_REUSE=1: test the package already installed, if any.
# RECADAM_PY_DEPS_ONLY=1: make the environment and install the dependencies, nothing else (CI
# does that in the background while Rust compiles).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
venv="${RECADAM_PY_VENV:-$root/target/python-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
export PATH="$venv/bin:$PATH"
# Installed once; later runs find them and download nothing.
if ! "$venv/bin/python" -c "import torch, numpy, pytest, transformers, accelerate, deepspeed, maturin" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch numpy pytest transformers accelerate deepspeed maturin
fi
[ "${RECADAM_PY_DEPS_ONLY:-0}" = 1 ] && exit 0
# The package itself, built by maturin through pip (no build isolation: maturin is in the venv).
# RECADAM_PY_REUSE=1 keeps a package already installed from this checkout (CI's second run, with
# other data folders, tests the same build).
if [ "${RECADAM_PY_REUSE:-0}" = 1 ] && "$venv/bin/python" -c "import recadam" 2>/dev/null; then
  :
else
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps "$here"
fi
# From outside the source folder, so that the installed package is what is tested.
cd "$root"
# DeepSpeed is installed above, so its test must run here, not skip.
export RECADAM_REQUIRE_DEEPSPEED="${RECADAM_REQUIRE_DEEPSPEED:-1}"
HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/tests" "$@"
