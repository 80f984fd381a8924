#!/usr/bin/env bash
# The GPU checks, as one script that fits in about 8 minutes on one H100 / H200 (the lent
# machines: torch 2.11.0+cu130, torchvision 0.26, transformers 5.17 there; this project pins
# 5.23: carry its wheel, see the README's "On a GPU"). Results go to $OUT (default ./gpu_out):
#   cuda_tests.txt     tests/test_cuda.py and the model lane's CUDA-aware tests
#   merge.json         merge_video_tokens time and memory on cuda (benchmarks/merge.py)
#   ttft_7b_16.json    TTFT and peak memory, LLaVA-OneVision-7B's shape (random weights), 16 frames
#   ttft_7b_64.json    the same at 64 frames
#   ttft_7b_fa2.json   FlashAttention-2 on the merged sequence, where flash-attn imports
#   env.txt            what ran it (GPU, torch, transformers, flash-attn)
# Usage: bash benchmarks/gpu_check.sh [OUT]     (a CPU-only machine stops at the first line)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu_out}}
mkdir -p "$OUT"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU here')" || exit 1

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
    python -c "import flash_attn; print('flash-attn', flash_attn.__version__)" 2>/dev/null || echo "flash-attn: not installed"
} > "$OUT/env.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep going on failure
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@"
    echo "$name: exit $? in $((SECONDS - start)) s" >> "$OUT/steps.txt"
}

step cuda_tests 150 bash -c "python -m pytest -q tests/test_cuda.py tests/test_evidence.py \
    > '$OUT/cuda_tests.txt' 2>&1"
step merge 60 bash -c "python benchmarks/merge.py --device cuda --json > '$OUT/merge.json'"
step ttft_7b_16 90 bash -c "python benchmarks/ttft.py --arch llava-onevision-qwen2-7b-ov-hf \
    --frames 16 --device cuda --json > '$OUT/ttft_7b_16.json'"
step ttft_7b_64 120 bash -c "python benchmarks/ttft.py --arch llava-onevision-qwen2-7b-ov-hf \
    --frames 64 --device cuda --skip-fastv --json > '$OUT/ttft_7b_64.json'"
if python -c "import flash_attn" 2>/dev/null; then
    step ttft_7b_fa2 60 bash -c "python benchmarks/ttft.py --arch llava-onevision-qwen2-7b-ov-hf \
        --frames 16 --device cuda --attn flash_attention_2 --skip-fastv --json \
        > '$OUT/ttft_7b_fa2.json'"
fi
cat "$OUT/steps.txt"
