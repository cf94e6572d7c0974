#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs every test: unit, lab (namespaces) and interop
# (strongSwan). Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -p no:cacheprovider "$@"
