#!/usr/bin/env bash
# One GPU check of advnets on a CUDA machine, finishing within SECONDS (default 540), everything under $OUT
# (default ./device-out). On a machine without registry access, gather the wheels first with
# `bash scripts/device-prepare.sh` (into device-wheels/, beside this checkout), then on the GPU machine:
#   bash scripts/device-check.sh 540
#
#   1. installs the prepared wheels (pip --no-deps --target; torch and the rest stay the machine's own), unpacks
#      MNIST, uses this checkout's src/ through PYTHONPATH;
#   2. prints GPU, driver, torch, CUDA;
#   3. runs the GPU tests (pytest -m gpu);
#   4. runs the throughput benchmark on cuda (plain loop, Lightning K=1, best K, compiled);
#   5. trains experiment=paper_mnist trainer=gpu with the fastest settings found, for the time left (max_epochs
#      from the measured speed, max_time as a guard), checkpointing; the full Parzen protocol on the best
#      checkpoint (results.json on the GPU), then publishes it (python -m advnets.cli.publish: generator.pt,
#      val_curve.csv, pictures, check.json);
#   6. $OUT gets at most 8 files (a small, fixed set of files): device-check.log, summary.json, throughput.json,
#      paper_mnist_gpu.tar.gz (the published folder, for results/paper_mnist_gpu/), run.tar.gz (the run folder
#      without checkpoints: W&B offline run, samples, config).
#
#   --dry: the same steps on the CPU with a tiny config (quickstart nets, 2 epochs), no wheels, in about a minute;
#          CI runs it (tests/test_device_check.py) so this script cannot rot.
#   --plan: print each stage's budget for SECONDS and exit.
#
# Stage budgets (seconds; TESTS_S and BENCH_S may be set): the GPU tests TESTS_S, the benchmark BENCH_S (two
# compiles among its variants), evaluation + publishing + packing RESERVE; training gets what is left, at least
# MIN_TRAIN, else the script refuses SECONDS in one line before it starts.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DRY=0
PLAN=0
BUDGET=540
for arg in "$@"; do
  case $arg in
    --dry) DRY=1 ;;
    --plan) PLAN=1 ;;
    ''|*[!0-9]*) echo "advnets: error: device-check.sh argument '$arg'; allowed: SECONDS (a whole number), --dry or --plan" >&2; exit 2 ;;
    *) BUDGET=$arg ;;
  esac
done
if [ "$DRY" = 1 ]; then
  TESTS_S=${TESTS_S:-150} BENCH_S=${BENCH_S:-90} RESERVE=25 MIN_TRAIN=20
else
  TESTS_S=${TESTS_S:-230} BENCH_S=${BENCH_S:-110} RESERVE=100 MIN_TRAIN=60
fi
for value in "$TESTS_S" "$BENCH_S"; do
  case $value in ''|*[!0-9]*) echo "advnets: error: TESTS_S=$TESTS_S BENCH_S=$BENCH_S; allowed: whole numbers of seconds" >&2; exit 2 ;; esac
done
NEEDED=$((TESTS_S + BENCH_S + RESERVE + MIN_TRAIN))
if [ "$BUDGET" -lt "$NEEDED" ]; then
  echo "advnets: error: device-check.sh budget $BUDGET s; allowed: >= $NEEDED s (tests $TESTS_S + benchmark $BENCH_S + training $MIN_TRAIN + evaluation $RESERVE), or smaller TESTS_S / BENCH_S" >&2
  exit 2
fi
if [ "$PLAN" = 1 ]; then
  echo "budget $BUDGET s: GPU tests $TESTS_S s, benchmark $BENCH_S s, training the rest (at least $MIN_TRAIN s), evaluation and publishing $RESERVE s"
  exit 0
fi
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
OUT=${OUT:-$REPO/device-out}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/advnets-device.XXXXXX")
PY=${PYTHON:-python3}
LOG=$OUT/device-check.log
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true HYDRA_FULL_ERROR=1
stage() { echo; echo "=== [$(($(date +%s) - START)) s, $(left) s left] $*"; }
declare -A STATUS

stage "setup (dry=$DRY, budget ${BUDGET} s, out $OUT, work $WORK)"
SITE=$WORK/site
mkdir -p "$SITE"
# the project from src/, not installed: a bare dist-info so importlib.metadata.version("advnets") answers
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
mkdir -p "$SITE/advnets-$VERSION.dist-info"
printf 'Metadata-Version: 2.1\nName: advnets\nVersion: %s\n' "$VERSION" > "$SITE/advnets-$VERSION.dist-info/METADATA"
export PYTHONPATH=$REPO/src:$REPO/tests:$SITE${PYTHONPATH:+:$PYTHONPATH}
if [ "$DRY" = 0 ]; then
  WHEELS=$REPO/device-wheels
  if ! ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    echo "advnets: error: no wheels in $WHEELS; run scripts/device-prepare.sh and copy device-wheels/ beside this checkout" >&2
    exit 2
  fi
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
    || { echo "advnets: error: installing the prepared wheels failed" >&2; exit 1; }
  mkdir -p "$WORK/data/MNIST/raw"
  for gz in "$WHEELS"/data/*.gz; do gunzip -c "$gz" > "$WORK/data/MNIST/raw/$(basename "$gz" .gz)"; done
  export ADVNETS_DATA_DIR=$WORK/data
fi
$PY -c "import hydra, omegaconf; print('hydra', hydra.__version__, 'omegaconf', omegaconf.__version__)" \
  || { echo "advnets: error: hydra/omegaconf do not import" >&2; exit 1; }
LOGGER=wandb
if ! $PY -c "import wandb; print('wandb', wandb.__version__)"; then
  if [ "$DRY" = 0 ] && ls "$WHEELS"/extra/*.whl > /dev/null 2>&1; then  # wandb may need a newer protobuf
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$WORK/extra" "$WHEELS"/extra/*.whl
    export PYTHONPATH=$PYTHONPATH:$WORK/extra
  fi
  $PY -c "import wandb; print('wandb', wandb.__version__)" || { LOGGER=csv; echo "wandb does not import: logger=csv"; }
fi
STATUS[logger]=$LOGGER

stage "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "nvidia-smi: none"
$PY - <<'EOF'
import platform, torch, pytorch_lightning as pl
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"lightning {pl.__version__}, cuda available: {torch.cuda.is_available()}, CPU cores: {torch.get_num_threads()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}")
EOF

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  TEST_ENV=(ADVNETS_GPU_TESTS_DEVICE=cpu)
  TEST_ARGS=(-k "parzen or updates_on")   # the fast ones: the tests' own logic, run on the CPU
  BENCH=(--device cpu --model small --batch 16 --threads 1 --steps 24 --rounds 1 --ks 4 --compile "")
  BASE=(experiment=quickstart trainer=cpu threads=1 eval.n_samples=300
        callbacks.parzen_monitor.every_n_epochs=1 callbacks.sample_grid.every_n_epochs=2)
  EPOCH_UPDATES=12
else
  DEVICE=cuda
  TEST_ENV=()
  TEST_ARGS=()
  BENCH=(--device cuda --model paper --batch 100 --threads 4 --steps 2000 --rounds 1 --ks 16,64
         --compile default,reduce-overhead)
  BASE=(experiment=paper_mnist trainer=gpu threads=4 trainer.log_every_n_steps=500
        callbacks.parzen_monitor.every_n_epochs=10 callbacks.sample_grid.every_n_epochs=100
        callbacks.last_checkpoint.every_n_epochs=50)
  EPOCH_UPDATES=500
fi

stage "GPU tests (pytest -m gpu, budget $TESTS_S s)"
timeout "$TESTS_S" env "${TEST_ENV[@]}" $PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider \
  "${TEST_ARGS[@]}" 2>&1 | tail -25
STATUS[gpu_tests]=${PIPESTATUS[0]}

stage "throughput ($DEVICE, budget $BENCH_S s)"
timeout "$BENCH_S" $PY benchmarks/train_throughput.py "${BENCH[@]}" --json "$OUT/throughput.json" 2>&1 \
  | grep -v -i "warn\|litlogger\|available:\|stopped:"
STATUS[benchmark]=${PIPESTATUS[0]}

# the fastest settings measured: K and compile mode of the best Lightning variant, and its updates/s
read -r K COMPILE RATE < <($PY - "$OUT/throughput.json" <<'EOF'
import json, re, sys
try:
    bench = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print(32, "none", 0)  # no measurement: a safe guess
    raise SystemExit
rates = {k: v for k, v in bench["updates_per_s"].items() if k.startswith("Lightning")}
best = max(rates, key=rates.get)
eager = max((k for k in rates if "compile" not in k), key=rates.get)
if rates[best] < 1.1 * rates[eager]:  # a compiled update only when clearly faster: eager is the tested path
    best = eager
k = re.search(r"K=(\d+)", best).group(1)
mode = re.search(r"compile=(\S+)", best)
print(k, mode.group(1) if mode else "none", int(rates[best]))
EOF
)
TRAIN_S=$(($(left) - RESERVE))   # what the stages before left, less evaluation, publishing and packing
if [ "$TRAIN_S" -lt "$MIN_TRAIN" ]; then TRAIN_S=$MIN_TRAIN; fi
if [ "$DRY" = 1 ]; then
  EPOCHS=2
elif [ "$RATE" -gt 0 ]; then  # start-up and the monitors cost time too: aim at 70% of the measured speed
  EPOCHS=$((TRAIN_S * RATE * 7 / 10 / EPOCH_UPDATES))
  [ "$EPOCHS" -ge 1 ] || EPOCHS=1
else
  EPOCHS=100000  # max_time decides
fi
MAX_TIME=$(printf '00:%02d:%02d:%02d' $((TRAIN_S / 3600)) $((TRAIN_S % 3600 / 60)) $((TRAIN_S % 60)))
STATUS[settings]="updates_per_step=$K compile=$COMPILE max_epochs=$EPOCHS max_time=$MAX_TIME (measured $RATE updates/s)"

stage "train: ${BASE[0]} ${STATUS[settings]}"
RUN=$WORK/run
timeout $((TRAIN_S + RESERVE - 10)) $PY -m advnets.cli.train "${BASE[@]}" logger=$LOGGER callbacks.progress_bar=null \
  ++trainer.enable_progress_bar=false \
  game.updates_per_step="$K" game.compile="$COMPILE" trainer.max_epochs="$EPOCHS" ++trainer.max_time="$MAX_TIME" \
  hydra.run.dir="$RUN" 2>&1 | grep -v -i "warn\|litlogger" | tail -40
STATUS[train]=${PIPESTATUS[0]}

stage "publish"
PUB=$WORK/publish/paper_mnist_gpu
if [ -f "$RUN/results.json" ]; then
  $PY -m advnets.cli.publish "$RUN" "$PUB" --label "paper recipe on one GPU (device-check.sh)" 2>&1 | tail -5
  STATUS[publish]=${PIPESTATUS[0]}
  tar czf "$OUT/paper_mnist_gpu.tar.gz" -C "$WORK/publish" paper_mnist_gpu
else
  STATUS[publish]=skipped
fi
[ -d "$RUN" ] && tar czf "$OUT/run.tar.gz" -C "$WORK" --exclude=checkpoints --exclude=samples.npz run

stage "summary"
export STATUS_JSON
STATUS_JSON=$(for key in "${!STATUS[@]}"; do printf '%s\t%s\n' "$key" "${STATUS[$key]}"; done)
$PY - "$OUT" "$RUN" "$BUDGET" "$(($(date +%s) - START))" <<'EOF'
import json, os, sys
from pathlib import Path
import torch
out, run, budget, seconds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
summary = dict(line.split("\t", 1) for line in os.environ["STATUS_JSON"].splitlines() if "\t" in line)
summary.update(budget_s=budget, seconds=seconds, torch=torch.__version__, cuda=torch.version.cuda,
               gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for name in ("results.json", "metrics.json"):
    if (run / name).is_file():
        summary[name] = json.loads((run / name).read_text())
if (run / "val_curve.csv").is_file():
    summary["val_curve_rows"] = len((run / "val_curve.csv").read_text().splitlines()) - 1
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
r = summary.get("results.json", {})
print(json.dumps({k: summary[k] for k in summary if not k.endswith(".json")}, indent=2))
if r:
    print(f"Parzen LL {r['parzen_ll']:.1f} +- {r['parzen_se']:.1f} nats (sigma {r['sigma']:.3f}), epoch {r.get('epoch')}")
EOF
ls -la "$OUT"
rm -rf "$WORK"
[ "${STATUS[train]}" = 0 ] && [ "${STATUS[publish]}" = 0 ]
