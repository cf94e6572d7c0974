#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs the lab's main job. Until the lab's scenarios
# land this decodes a strongSwan-to-strongSwan capture kept in the repository.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
echo "== ipsec-lab decode tests/data/strongswan_s2s.pcap"
exec "$ROOT/.venv/bin/ipsec-lab" decode tests/data/strongswan_s2s.pcap
