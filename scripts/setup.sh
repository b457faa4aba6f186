#!/usr/bin/env bash
# Create (or update) the project's virtual environment with everything the tests need.
#   scripts/setup.sh            # .venv in the repository root
#   VENV=/path scripts/setup.sh
# Python packages come from PyPI, pinned by constraints.txt (torch==2.13.0 is the CPU wheel).
# System tools for reports: Graphviz's `dot` (diagrams) and Chromium (report tests); installed
# with apt-get when this runs as root on Debian/Ubuntu, otherwise the script says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${need_apt[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" fonts-dejavu-core >/dev/null
  else
    log "missing system packages: ${need_apt[*]} (report diagrams and report tests need them)."
    log "install them with your package manager, e.g.: sudo apt-get install ${need_apt[*]}"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
log "installing alexbench[test] (pinned by constraints.txt)"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[test]"
log "ready: $VENV/bin/alexbench"
