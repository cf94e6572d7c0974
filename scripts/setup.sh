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
    nmap nginx
    gcc python3-dev libnetfilter-queue-dev
    chromium chromium-driver
    freeradius freeradius-utils
    mmdebstrap
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
    # The freeradius, ocserv and nginx packages would start their daemons on the host: the lab starts its own inside a
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

# strongSwan 6 beside the system's strongSwan (lab.net.strongswan6, `gateways: {gwb: strongswan6}`):
# charon 6 from Debian 13's packages in a root file system of its own, built once with mmdebstrap
# from the Debian archive apt already uses; nothing of the system's strongSwan changes. On a
# machine whose own strongSwan is 6 already (Debian 13), that one is used and nothing is built.
SS6_ROOT="${IPSEC_LAB_STRONGSWAN6_ROOT:-/var/lib/ipsec-lab/strongswan6}"
SS6_SUITE=trixie
SS6_PACKAGES="strongswan-charon,strongswan-swanctl,libcharon-extra-plugins,libstrongswan-extra-plugins,libstrongswan-standard-plugins,libcharon-extauth-plugins,iproute2"
ss6_stamp="$SS6_ROOT/.ipsec-lab-strongswan6"
ss6_wanted="$SS6_SUITE $SS6_PACKAGES"
system_version="$(dpkg-query -W -f='${Version}' strongswan-charon 2>/dev/null || true)"
if dpkg --compare-versions "${system_version:-0}" ge 6; then
    say "strongSwan 6 is the system's own ($system_version)"
elif [ -f "$ss6_stamp" ] && [ "$(cat "$ss6_stamp")" = "$ss6_wanted" ] && [ -x "$SS6_ROOT/usr/lib/ipsec/charon" ]; then
    say "strongSwan 6 present in $SS6_ROOT"
else
    # the Debian archive apt uses for this machine's own release (a mirror or deb.debian.org)
    mirror="${IPSEC_LAB_DEBIAN_MIRROR:-$(apt-cache policy 2>/dev/null | awk '$2 ~ /^https?:\/\// {url = $2; next} url && /o=Debian,/ && /l=Debian,/ && /c=main/ {print url; exit} {url = ""}')}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    say "building strongSwan 6's root file system in $SS6_ROOT (Debian $SS6_SUITE from $mirror; about a minute, 200 MB; log: $SS6_ROOT.log)"
    rm -rf "$SS6_ROOT.new"
    mkdir -p "$(dirname "$SS6_ROOT")"
    if ! mmdebstrap --variant=apt --include="$SS6_PACKAGES" "$SS6_SUITE" "$SS6_ROOT.new" \
            "deb $mirror $SS6_SUITE main" > "$SS6_ROOT.log" 2>&1; then
        tail -n 20 "$SS6_ROOT.log" >&2
        rm -rf "$SS6_ROOT.new"
        echo "mmdebstrap could not build strongSwan 6's root file system from $mirror (the log is in $SS6_ROOT.log); set IPSEC_LAB_DEBIAN_MIRROR to a Debian archive this machine can reach and run this again." >&2
        exit 1
    fi
    echo "$ss6_wanted" > "$SS6_ROOT.new/.ipsec-lab-strongswan6"
    rm -rf "$SS6_ROOT"
    mv "$SS6_ROOT.new" "$SS6_ROOT"
    say "strongSwan 6: $(chroot "$SS6_ROOT" dpkg-query -W -f='${Version}' strongswan-charon) in $SS6_ROOT"
fi
