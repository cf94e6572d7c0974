#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs the lab's default job: our gateway behind a NAT box
# builds a tunnel to strongSwan, rekeys and closes it; captures, keys and logs land in out/demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/ipsec-lab" demo --out "${1:-out/demo}"
