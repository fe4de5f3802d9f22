#!/usr/bin/env bash
# What this project owes a GPU, in one call of under 10 minutes: the CUDA tests (make test-gpu),
# the batched table at LLaVA-1.5-7B's shape (issue 17's figures: traced greedy at batch 16
# <= 15 ms / token, <= 3.0x generate(), SGRS <= 1.6x traced greedy) and the profile of the
# 7B-shape step at batch 1 and 16 (kernels per step, GPU busy / wall) that says what to take out
# of the step next.
#
#   bash benchmarks/gpu_check.sh [LOG_DIR]      (from the repository root; LOG_DIR: ./gpu-logs)
#
# It runs on the machine's own python3 (which must hold torch with CUDA). Its image's transformers
# (5.17 in 2026-11) is older than the families this project traces need, so a newer one goes as
# wheels in .whl/ (git-ignored; name it in the device call's carry), made on any machine with pip:
# the versions CI tests with and their dependencies, less the large ones the image holds (34 MB):
#
#   python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl transformers==5.25.0 datasets==5.2.0 tokenizers==0.23.3
#   rm .whl/pyarrow-* .whl/numpy-* .whl/pandas-*
#
# The figures come first, the tests last. Each part has its own time limit (560 s in
# all, plus the wheels' install, for a device call of timeout_s=600), so one that hangs does not
# cost the others; every log is written whole to LOG_DIR (the batched table prints each method's
# figure to its log as it is measured, so a part cut short still leaves those).
set -u
LOG=${1:-gpu-logs}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing .whl/ failed"; exit 1; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
status=0
part() {  # part NAME SECONDS COMMAND...: run one part under its limit, its log in LOG/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout -k 5 "$limit" "$@" >"$LOG/$name.log" 2>&1
    local rc=$?
    tail -n 40 "$LOG/$name.log"
    echo "== $name: exit $rc after $((SECONDS - start))s"
    [ "$rc" -eq 0 ] || status=1
}
part env 20 python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.get_device_name())"
part batched-7b 210 python3 benchmarks/decoding_speed.py --model 7b --device cuda --dtype bfloat16 \
    --batch-sizes 1,16,32 --answer 48 --repeats 1 --methods "traced greedy,SGRS (all layers traced)"
# 8 tokens: at 7B a profiled step is ~30k host events, parsed after the run in tens of seconds
part profile-7b-batch1 90 python3 benchmarks/profile_step.py --model 7b --device cuda --dtype bfloat16 --batch 1 --answer 8
part profile-7b-batch16 90 python3 benchmarks/profile_step.py --model 7b --device cuda --dtype bfloat16 --batch 16 --answer 8
part test-gpu 150 python3 -m pytest -v -m gpu -p no:cacheprovider tests/test_cuda.py
exit $status
