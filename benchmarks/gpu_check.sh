#!/usr/bin/env bash
# The GPU check in one command: sets up what a bare GPU machine lacks, then runs benchmarks/gpu_check.py, which
# writes gpu_check.json and gpu_check.md (GPU, torch/CUDA, date, commit, and every stage's results) in the results
# folder. The stages share a time budget (GPU_CHECK_BUDGET_S, 530 s): with the set-up, under 9 minutes.
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine, once the staged files are in ~/stash
#   bash benchmarks/gpu_check.sh --dry-run    # anywhere, a few seconds of work on the CPU (also GPU_CHECK_DRY_RUN=1)
#
# Environment (defaults are where benchmarks/README.md's staging puts things):
#   GPU_CHECK_STASH              ~/stash: the staged files
#   GANBENCH_CIFAR10_JPEG        $GPU_CHECK_STASH/cifar10-jpeg-q75.tar.xz
#   GANBENCH_INCEPTION_WEIGHTS   $GPU_CHECK_STASH/default_1.pt (assembled from default_1.pt.part* when missing)
#   GPU_CHECK_WHEELS             $GPU_CHECK_STASH: wheels (tomli-w, pytest and its dependencies) for missing modules
#   GPU_CHECK_SITE               $GPU_CHECK_STASH/site: where those wheels are unpacked
#   GANBENCH_CACHE               $GPU_CHECK_STASH/cache: decoded images and reference statistics, kept between stages
#   GPU_CHECK_RESULTS            benchmarks/results (dry run: $TMPDIR/gpu_check-dry-run)
#   GPU_CHECK_COMMIT             the commit to record when the tree was copied without .git
#   GPU_CHECK_RUN_STEPS          6000: G steps of the stopped-and-resumed run
#   PYTHON                       python3
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 2
dry=${GPU_CHECK_DRY_RUN:-0}
for arg in "$@"; do
  case $arg in
    --dry-run) dry=1 ;;
    *) echo "gpu_check.sh: unknown argument $arg (only --dry-run)" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python3}
results=${GPU_CHECK_RESULTS:-$repo/benchmarks/results}
budget=${GPU_CHECK_BUDGET_S:-530}
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"  # ganbench from this working tree

if [[ $dry == 1 ]]; then  # its reports are not results: kept out of benchmarks/results unless asked
  export GPU_CHECK_DRY_RUN=1
  results=${GPU_CHECK_RESULTS:-${TMPDIR:-/tmp}/gpu_check-dry-run}
  exec "$python" benchmarks/gpu_check.py --results "$results" --budget "${GPU_CHECK_BUDGET_S:-600}" --dry-run
fi

stash=${GPU_CHECK_STASH:-$HOME/stash}
export GANBENCH_CIFAR10_JPEG=${GANBENCH_CIFAR10_JPEG:-$stash/cifar10-jpeg-q75.tar.xz}
export GANBENCH_INCEPTION_WEIGHTS=${GANBENCH_INCEPTION_WEIGHTS:-$stash/default_1.pt}
export GANBENCH_CACHE=${GANBENCH_CACHE:-$stash/cache}
wheels=${GPU_CHECK_WHEELS:-$stash}
site=${GPU_CHECK_SITE:-$stash/site}
weights_sha256=7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34  # the FID trunk the 3.113 is for

# The weights travel in parts (one call carries at most 64 MiB): put them together once.
w=$GANBENCH_INCEPTION_WEIGHTS
if [[ ! -f $w ]] && compgen -G "$w.part*" > /dev/null; then
  cat "$w".part* > "$w.tmp" && mv "$w.tmp" "$w"
fi
if [[ -f $w ]] && command -v sha256sum > /dev/null; then
  echo "$weights_sha256  $w" | sha256sum -c --quiet || echo "gpu_check.sh: $w is not the FID trunk the expected FID is for" >&2
fi
for file in "$GANBENCH_CIFAR10_JPEG" "$w"; do
  [[ -f $file ]] || echo "gpu_check.sh: $file is missing; the stages that need it will fail (see benchmarks/README.md)" >&2
done

# Modules a bare GPU image lacks (tomli-w, imported when a recipe loads; pytest for the GPU tests): from the wheels.
if ! "$python" -c "import tomli_w, pytest" 2> /dev/null; then
  if compgen -G "$wheels/*.whl" > /dev/null; then
    mkdir -p "$site"
    "$python" -m pip install -q --no-index --no-deps --target "$site" "$wheels"/*.whl 2> /dev/null \
      || "$python" -c "import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]" \
        "$site" "$wheels"/*.whl
    export PYTHONPATH="$PYTHONPATH:$site"
  fi
  "$python" -c "import tomli_w, pytest" || echo "gpu_check.sh: tomli_w or pytest still missing; stage their wheels" >&2
fi
mkdir -p "$GANBENCH_CACHE"

timeout -k 10 $((budget + 25)) "$python" benchmarks/gpu_check.py --results "$results" --budget "$budget"
