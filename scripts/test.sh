#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs every test: unit, lab (namespaces) and interop
# (strongSwan). Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
# The tests are split into IPSEC_LAB_TEST_JOBS shares (default: the number of CPUs), each run
# by its own pytest in a world of its own (lab/net/world.py: its own mount, network and PID
# namespaces and /run), all at once; each share's output follows when all have ended.
# IPSEC_LAB_TEST_JOBS=1 runs one pytest on the host, as before.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
JOBS="${IPSEC_LAB_TEST_JOBS:-$(nproc)}"
if [ "$JOBS" -le 1 ] || ! command -v unshare >/dev/null; then
    exec "$PY" -m pytest -p no:cacheprovider "$@"
fi
LOGS="$(mktemp -d /tmp/ipsec-lab-tests.XXXXXX)"
start=$(date +%s)
pids=()
for ((i = 0; i < JOBS; i++)); do
    # --no-slot: a share is not a lab; the labs inside it run one at a time under its own lock
    env -u IPSEC_LAB_HOST "$PY" -m lab.net.world --no-slot -- \
        "$PY" -m pytest -p no:cacheprovider --shard "$i/$JOBS" --basetemp "$LOGS/tmp-$i" "$@" \
        > "$LOGS/share-$i.txt" 2>&1 < /dev/null &
    pids+=($!)
done
status=0
for ((i = 0; i < JOBS; i++)); do
    code=0
    wait "${pids[$i]}" || code=$?
    [ "$code" -eq 5 ] && code=0   # this share got no tests (a narrow selection)
    [ "$code" -ne 0 ] && status=1
    codes[$i]=$code
done
for ((i = 0; i < JOBS; i++)); do
    echo "=============== share $((i + 1)) of $JOBS (exit status ${codes[$i]}) ==============="
    cat "$LOGS/share-$i.txt"
done
echo "$JOBS shares in parallel worlds: $([ $status -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - start )) s"
rm -rf "$LOGS"
exit $status
