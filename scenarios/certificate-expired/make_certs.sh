#!/bin/sh
# Makes this scenario's certificates with strongSwan's pki (ECDSA P-256): the company CA, gw's
# certificate that expired on 1 December 2025 (valid for a year from 1 December 2024), the same
# key renewed for ten years from today, and the two laptops' certificates. Run once from
# anywhere; the files are kept with the scenario (hosts/<node>/x509ca, x509, private).
set -e
cd "$(dirname "$0")/hosts"
pki() { command pki "$@" 2>/dev/null; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for node in gw client1 client2; do mkdir -p "$node/x509ca" "$node/x509" "$node/private"; done
pki --gen --type ecdsa --size 256 --outform pem > "$tmp/ca.key"
pki --self --in "$tmp/ca.key" --type ecdsa --dn "O=ipsec-lab, CN=ipsec-lab company CA" --ca \
    --lifetime 7300 --outform pem > "$tmp/ca.pem"
issue() {  # node, then pki --issue options
    node=$1; shift
    cp "$tmp/ca.pem" "$node/x509ca/ca.pem"
    [ -f "$node/private/$node.key" ] || pki --gen --type ecdsa --size 256 --outform pem > "$node/private/$node.key"
    pki --issue --in "$node/private/$node.key" --type priv --cacert "$tmp/ca.pem" --cakey "$tmp/ca.key" \
        --dn "O=ipsec-lab, CN=$node.lab" --san "$node.lab" --outform pem "$@"
}
issue gw --flag serverAuth --not-before "01.12.24 00:00:00" --not-after "01.12.25 00:00:00" > gw/x509/gw.pem
issue gw --flag serverAuth --lifetime 3650 > gw/x509/gw-renewed.pem
issue client1 --flag clientAuth --lifetime 3650 > client1/x509/client1.pem
issue client2 --flag clientAuth --lifetime 3650 > client2/x509/client2.pem
