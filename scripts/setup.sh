#!/usr/bin/env bash
# Create (or update) the project's virtual environment.
#   scripts/setup.sh                 # .venv in the repository root: alexbench[test], CPU torch
#   scripts/setup.sh --system-tools  # also Graphviz and Chromium (the report tests need both)
#   VENV=/path scripts/setup.sh
#   scripts/setup.sh --print-torch-plan   # say where torch would come from, install nothing
# torch: a version pin does not choose a build. PyPI's torch for Linux x86_64 is the multi-GB
# CUDA build; the CPU build comes from PyTorch's own index, which this script uses by default:
#   ALEXBENCH_TORCH=cpu   (default) torch from $TORCH_INDEX_URL (https://download.pytorch.org/whl/cpu)
#   ALEXBENCH_TORCH=cuda  torch from the configured package sources (PyPI: the CUDA build), or
#                         from $TORCH_INDEX_URL if set (e.g. https://download.pytorch.org/whl/cu128)
# If that index does not answer within $ALEXBENCH_PROBE_TIMEOUT seconds (default 5; a machine
# with only a private mirror), torch comes from the configured sources, said in one line.
# Versions are pinned by constraints.txt either way.
# `make compare` needs only the Python packages; `make test` passes --system-tools, installed
# with apt-get when this runs as root on Debian/Ubuntu, otherwise the script says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
ALEXBENCH_TORCH=${ALEXBENCH_TORCH:-cpu}
ALEXBENCH_PROBE_TIMEOUT=${ALEXBENCH_PROBE_TIMEOUT:-5}
CPU_INDEX=https://download.pytorch.org/whl/cpu

log() { printf '[setup] %s\n' "$*" >&2; }

system_tools=0 plan_only=0
for arg in "$@"; do
  case "$arg" in
    --system-tools) system_tools=1 ;;
    --print-torch-plan) plan_only=1 ;;
    *) log "unknown option '$arg'; valid: --system-tools, --print-torch-plan"; exit 2 ;;
  esac
done

# Exit 0 when the index serves torch (its PEP 503 page INDEX/torch/) within the timeout.
probe() {
  "$PYTHON" - "${1%/}/torch/" "$ALEXBENCH_PROBE_TIMEOUT" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).close()
except Exception:  # unreachable, refused, timed out, or an error status (a proxy's 403)
    sys.exit(1)
PY
}

# The pip arguments that install torch (one per line), or nothing: the configured sources.
torch_plan() {
  local index
  case "$ALEXBENCH_TORCH" in
    cpu) index=${TORCH_INDEX_URL:-$CPU_INDEX} ;;
    cuda) index=${TORCH_INDEX_URL:-} ;;
    *) log "ALEXBENCH_TORCH='$ALEXBENCH_TORCH' is not valid; use cpu (the default) or cuda"; return 2 ;;
  esac
  [ -n "$index" ] || return 0
  if probe "$index"; then
    printf '%s\n' --index-url "$index"
  else
    log "$index is unreachable (probed with a ${ALEXBENCH_PROBE_TIMEOUT} s timeout): torch comes from the configured package sources (on PyPI for Linux x86_64 that is the CUDA build)"
  fi
}

plan=$(torch_plan) || exit $?
if [ "$plan_only" = 1 ]; then
  if [ -n "$plan" ]; then echo "torch: pip install torch $(echo $plan)"; else echo "torch: configured sources"; fi
  exit 0
fi

if [ "$system_tools" = 1 ]; then
  need_apt=()
  command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1 || need_apt+=(chromium)
  if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing ${need_apt[*]} with apt-get"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq --no-install-recommends "${need_apt[@]}" fonts-dejavu-core >/dev/null
    else
      log "missing system packages: ${need_apt[*]} (the report tests need them)."
      log "install them with your package manager, e.g.: sudo apt-get install ${need_apt[*]}"
    fi
  fi
elif ! command -v dot >/dev/null 2>&1; then
  log "note: Graphviz's 'dot' is not installed; reports then have no architecture diagram (compare does not need it)"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -n "$plan" ]; then
  log "installing torch ($ALEXBENCH_TORCH build) from ${plan#--index-url?}"
  # shellcheck disable=SC2086  # $plan is two words: --index-url URL
  "$VENV/bin/python" -m pip install -q -c constraints.txt torch $plan
fi
log "installing alexbench[test] (pinned by constraints.txt)"
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[test]"
log "ready: $VENV/bin/alexbench"
