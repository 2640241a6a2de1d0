# The first call (carrying .gpu/c00): keep chunk 0 outside the repo, install the
# carried wheels from it, run the CUDA tests. Then one call per further chunk: cp .gpu/c0N /tmp/blob/
set -x
mkdir -p /tmp/blob /tmp/w && cp .gpu/c00 /tmp/blob/
nvidia-smi -L; python3 -V; nproc
(tar xf /tmp/blob/c00 -C /tmp/w data whl 2>/dev/null || true); ls /tmp/w/whl | wc -l
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $(ls /tmp/w/whl/*.whl | grep -v bitsandbytes)
python3 -m zipfile -e /tmp/w/whl/bitsandbytes-*.whl /tmp/site  # no unzip there
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1
python3 -c "import torch, transformers, bitsandbytes, peft, sqlglot, textual, typer, accelerate; print(torch.__version__, transformers.__version__, bitsandbytes.__version__, peft.__version__, accelerate.__version__, typer.__version__)"
python3 -m tui.cli --help | head -4
python3 -m pytest -q -p no:cacheprovider tests/finetune/test_train.py tests/model/test_engine.py -k "cuda or qlora" -W ignore 2>&1 | tail -25
