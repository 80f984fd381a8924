#!/usr/bin/env bash
# Wheels the lent GPU machines lack, for benchmarks/gpu_check.sh: they run Python 3.12 with
# torch 2.11.0+cu130 and transformers 5.17, without PyAV; this project pins transformers 5.23.
# Downloads into .whl/ (ignored by git here), about 50 MB; the device call carries it:
#   run(carry=[".whl"], command="python3 -m pip install -q --no-index --no-deps --no-compile
#       --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:.
#       && bash benchmarks/gpu_check.sh $OUT", timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl transformers==5.23.0 av==18.1.0
ls -la .whl
