#!/usr/bin/env bash
# Installs what ipsec-lab needs on Debian 12: Debian packages and a virtualenv (.venv).
# Idempotent: on a ready machine it checks and returns in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
DEBIAN_PACKAGES=(
    python3 python3-venv python3-pip
    mininet iproute2 iptables iputils-ping tcpdump tshark iperf3
    strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
    libcharon-extauth-plugins strongswan-pki
    conntrack wireshark-common uidmap
    wireguard-go wireguard-tools openvpn ocserv openconnect
    gcc python3-dev libnetfilter-queue-dev
    chromium chromium-driver
    freeradius freeradius-utils
)

say() { printf '[setup] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    echo "ipsec-lab needs root (it installs Debian packages and creates network namespaces): run this again with sudo or as root." >&2
    exit 1
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    echo "ipsec-lab setup expects Debian 12 (apt-get and dpkg-query were not found)." >&2
    exit 1
fi

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    # The freeradius and ocserv packages would start their daemons on the host: the lab starts its own inside a
    # namespace, so services are forbidden to start while installing (policy-rc.d exit 101).
    policy_added=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || {
        [ -z "$policy_added" ] || rm -f /usr/sbin/policy-rc.d
        exit 1
    }
    [ -z "$policy_added" ] || rm -f /usr/sbin/policy-rc.d
else
    say "Debian packages present"
fi

stamp="$VENV/.ipsec-lab-installed"
wanted="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtualenv $VENV"
    /usr/bin/python3 -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    say "installing Python packages into $VENV (log: $VENV/pip.log)"
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
           "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[test]"; } > "$VENV/pip.log" 2>&1; then
        tail -n 30 "$VENV/pip.log" >&2
        echo "pip could not install ipsec-lab's Python packages; the whole log is in $VENV/pip.log." >&2
        exit 1
    fi
    echo "$wanted" > "$stamp"
else
    say "Python packages present"
fi
