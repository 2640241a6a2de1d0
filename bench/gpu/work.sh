# The last call, with every chunk on the machine: first use of the real model on CUDA (GGUF
# conversion included), bench/ask.py on CUDA, 12 steps of the seed's NF4 recipe, then bf16
# training until BUDGET seconds after the start; the adapter and the log come back in $OUT.
#   BUDGET=530 bash bench/gpu/work.sh 2>&1 | tee $OUT/log.txt     (carrying the last chunk)
T0=$(date +%s); DEADLINE=$((T0 + ${BUDGET:-400}))
set -x
cp .gpu/c0? /tmp/blob/ && cat /tmp/blob/c0? > /tmp/blob.tar && sha256sum /tmp/blob.tar | cut -c1-16
tar xf /tmp/blob.tar -C /tmp/w gguf && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/w/gguf/*.whl
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 GEMMA_SQL_CACHE=/tmp/cache TQDM_MININTERVAL=15 PYTHONUNBUFFERED=1
xz -dc /tmp/w/data/train.jsonl.xz > /tmp/w/train.jsonl
/usr/bin/time -f "first ask: %e s wall, %M KiB max RSS" python3 -m tui.cli ask model/samples/chinook.db "How many albums are there?" --json --device cuda
timeout 120 python3 bench/ask.py --device cuda
timeout 60 python3 -m tui.cli finetune --base gemma-3-270m-sql --data /tmp/w/train.jsonl --max-length 1152 --batch-size 16 --max-steps 12 --save-every 0 --output /tmp/nf4 --device cuda
python3 -c "import json; m=json.load(open('/tmp/nf4/metrics.json')); print('NF4 recipe', {k: m[k] for k in ('steps','status','tokens_per_second')}, [h['loss'] for h in m['history']])"
timeout $((DEADLINE - $(date +%s) + 30)) python3 bench/gpu/train.py $DEADLINE
cp /tmp/ft/adapter_model.safetensors /tmp/ft/adapter_config.json /tmp/ft/answer_vocab.json /tmp/ft/README.md /tmp/ft/metrics.json /tmp/ft/loss.png $OUT/
echo "work: $(( $(date +%s) - T0 )) s"
