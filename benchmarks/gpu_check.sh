#!/usr/bin/env bash
# The GPU check on a GPU machine: installs the wheels in .whl/ (when that folder exists) into
# /tmp/site, puts the repository on PYTHONPATH (the package need not be pip-installed) and runs
# benchmarks/gpu_check.py with the arguments given. Results go to $OUT (default
# benchmarks/out/gpu_check/). docs/performance.md ("GPU: the GPU check") describes it. PYTHON
# overrides the interpreter (default python3, the one with PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$py" benchmarks/gpu_check.py "$@"
