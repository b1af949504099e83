#!/usr/bin/env bash
# Run on a machine with pip access to the package registry, for a GPU machine that has none:
#   bash scripts/device-prepare.sh [DEST]      (DEST default: device-wheels/, git-ignored)
# Gathers what such a GPU machine typically lacks (Python 3.12, torch, Lightning,
# torchmetrics, torchvision, scikit-learn, matplotlib, rich, pytest are there; hydra-core, omegaconf, antlr4,
# wandb and some of wandb's needs are not): Python 3.12 manylinux wheels, antlr4-python3-runtime 4.9.3 built here
# as a pure wheel (PyPI has only its sdist), and MNIST's four IDX files gzipped. Copy DEST beside the checkout on
# the GPU machine and run `bash scripts/device-check.sh 540` there.
# Prints the total size, kept under 60 MiB so that DEST and the checkout copy quickly.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-device-wheels}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DATA=${ADVNETS_DATA_DIR:-data}
# the versions this project is tested with here (pyproject admits them)
WANDB=${WANDB_VERSION:-$($PY -c 'from importlib.metadata import version; print(version("wandb"))' 2>/dev/null || echo 0.31.0)}
HYDRA=${HYDRA_VERSION:-1.3.8}
OMEGACONF=${OMEGACONF_VERSION:-2.3.1}
# packages such a GPU machine already has (torch, Lightning, torchmetrics, ...): not gathered, so that its
# own versions (used by torch, Lightning, JAX) stay the ones imported
HAVE="anyio certifi charset_normalizer click h11 httpcore httpx idna packaging protobuf pyyaml requests typing_extensions urllib3 xxhash"
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)

rm -rf "$DEST" && mkdir -p "$DEST/all" "$DEST/extra" "$DEST/data"
echo "wandb $WANDB (with its needs), hydra-core $HYDRA, omegaconf $OMEGACONF, antlr4-python3-runtime 4.9.3 -> $DEST"
$PY -m pip download -q "${PLATFORM[@]}" -d "$DEST/all" "wandb==$WANDB"
$PY -m pip download -q --no-deps "${PLATFORM[@]}" -d "$DEST/all" "hydra-core==$HYDRA" "omegaconf==$OMEGACONF"
$PY -m pip wheel -q --no-deps -w "$DEST/all" antlr4-python3-runtime==4.9.3
for wheel in "$DEST"/all/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
  if [[ " $HAVE " == *" $name "* ]]; then
    # protobuf is kept aside: device-check.sh uses it only if wandb cannot import with the machine's own
    [ "$name" = protobuf ] && mv "$wheel" "$DEST/extra/" || rm "$wheel"
  else
    mv "$wheel" "$DEST/"
  fi
done
rmdir "$DEST/all"

raw="$DATA/MNIST/raw"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$raw/$f" ] || { echo "advnets: error: $raw/$f missing; set ADVNETS_DATA_DIR to a folder with MNIST/raw" >&2; exit 2; }
  gzip -9 -c "$raw/$f" > "$DEST/data/$f.gz"
done

ls -1 "$DEST" "$DEST/extra" "$DEST/data"
total=$(du -sb "$DEST" | cut -f1)
echo "total: $((total / 1024 / 1024)) MiB ($total bytes) in $DEST"
if [ "$total" -gt $((60 * 1024 * 1024)) ]; then
  echo "advnets: error: $DEST is over 60 MiB; keep the copy small (at most 60 MiB)" >&2
  exit 1
fi
