#!/bin/sh
# The packages benchmarks/bench_gpu.py needs on a lent GPU machine beyond its image's (PyTorch with
# CUDA, numpy, pandas, PyYAML, tokenizers, safetensors and the rest are there; nothing can be
# downloaded there): wheels for its Python 3.12, into .whl/ (ignored by git), carried to it.
#
#   sh benchmarks/gpu_wheels.sh        # here, once (needs `make setup` and the network)
#
# Then, on the GPU machine, from the checkout with .whl/ beside it:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   PATH=/tmp/site/bin:$PATH PYTHONPATH=/tmp/site TORCH_EXTENSIONS_DIR=/tmp/ext \
#     python3 benchmarks/bench_gpu.py --out bench_gpu.json
# (/tmp/site/bin: ninja, which DeepSpeed's CPU Adam compiles with on first use.)
set -eu
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir .whl
pinned() { grep -h "^$1==" envs/train.txt envs/bench.txt | head -n 1; }
# DeepSpeed is published as source only: built here without its ops (pure Python); the ops it
# needs (CPU Adam) compile on first use where they run.
DS_BUILD_OPS=0 .venv/bin/pip wheel -q --no-deps --no-build-isolation -w .whl "$(pinned deepspeed)"
# The project's transformers (the image's is older; its hub client is recent enough for it), the
# config schema's jsonschema, zarr for the training job's store, accelerate for the thesis-style
# Trainer (P2's baseline), and what DeepSpeed and they import that the image lacks or may hold too
# old (regex, typing-extensions, psutil; DeepSpeed's einops, msgpack, tabulate, py-cpuinfo, and
# ninja for compiling its CPU Adam): this checkout's versions.
.venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "$(pinned transformers)" "$(pinned jsonschema)" "$(pinned zarr)" "$(pinned accelerate)" "$(pinned psutil)" \
  $(.venv/bin/pip freeze | grep -E '^(jsonschema-specifications|referencing|rpds-py|hjson|pydantic|pydantic_core|annotated-types|typing-inspection|typing_extensions|regex|numcodecs|donfig|google-crc32c|einops|msgpack|tabulate|py-cpuinfo|ninja)==')
ls -l .whl
du -sh .whl
