#!/usr/bin/env bash
# One GPU window, spent in one run: the GPU benchmarks (pipeline against the ADG2-style loop,
# image predictor, video predictor) with random weights of the real sizes, every figure written
# under one folder. The lent machine (see the device tool's KINDS.md) has python3 with torch,
# torchvision, opencv and an older transformers, and no network: what is missing travels as
# wheels in .whl/; Meta's sam2 and its hydra, omegaconf, antlr4 and iopath (pure Python; antlr4
# 4.9.3 has no wheel) as the folders tests/run.sh installed in .venv/reference.
#
# Here, once (after `bash tests/run.sh --co -q` has built .venv):
#     bash benchmarks/gpu_window.sh wheels
# There, through the device tool (about 9.5 minutes of device time; each step has its own limit;
# without autodistill there, bench_pipeline runs ours through labeling.label_folder):
#     run(command="bash benchmarks/gpu_window.sh run", timeout_s=600, carry=[".whl", ".venv/reference/sam2",
#         ".venv/reference/hydra", ".venv/reference/omegaconf", ".venv/reference/antlr4", ".venv/reference/iopath"])
# Figures: $OUT/*.json and $OUT/*.log (OUT defaults to benchmarks/gpu-results); copy them into
# benchmarks/RESULTS.md with the command above.
set -uo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
wheels)
  # Python 3.12 wheels of what the GPU image lacks or has too old; versions as in .venv here
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    transformers==5.24.0 tokenizers==0.23.3 huggingface_hub==2.4.0 hf-xet==1.8.0 typer==0.25.1 \
    supervision==0.31.2 defusedxml==0.7.1 pycocotools==2.0.11 portalocker==4.4.2
  du -sh .whl
  ;;
run)
  OUT="${OUT:-benchmarks/gpu-results}"
  mkdir -p "$OUT"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH="/tmp/site:$PWD:$PWD/.venv/reference" PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
  python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> "$OUT/gpu.txt" 2>&1
  step() {  # step NAME SECONDS COMMAND...: one benchmark, its log and its exit status kept
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $?" | tee -a "$OUT/steps.txt"
  }
  step pipeline-large 330 python3 benchmarks/bench_pipeline.py --device cuda --bf16 --images 200 \
    --florence large --sam2 large --ours-beams 1,3 --json "$OUT/pipeline-large.json"
  step image-predictor 75 python3 benchmarks/bench_image_predictor.py --device cuda --bf16 \
    --variant sam2.1_hiera_large --json "$OUT/image-predictor.json"
  step video 90 python3 benchmarks/bench_video.py --device cuda --json "$OUT/video.json"
  # last (the least needed): whether this machine's cores keep a 10 ms/image device busy, Florence-2's
  # 768-pixel preprocessing included
  step overlap 40 python3 benchmarks/bench_overlap.py --device-ms 10 --grounder-pixels 768 --repeats 2 \
    --json "$OUT/overlap.json"
  ;;
*)
  echo "usage: bash benchmarks/gpu_window.sh wheels|run" >&2
  exit 2
  ;;
esac
