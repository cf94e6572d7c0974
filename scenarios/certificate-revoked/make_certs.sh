#!/bin/sh
# Makes this scenario's certificates with strongSwan's pki (ECDSA P-256): the company CA, gw's
# certificate, the two laptops' certificates, and the CA's certificate revocation list (CRL)
# that revokes client1's (reason: key compromise, the laptop was stolen), valid for ten years
# so that it never goes stale in the lab. The CRL waits in hosts/gw/crl/ until the scenario
# applies it. Run once from anywhere; the files are kept with the scenario.
set -e
cd "$(dirname "$0")/hosts"
pki() { command pki "$@" 2>/dev/null; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for node in gw client1 client2; do mkdir -p "$node/x509ca" "$node/x509" "$node/private"; done
mkdir -p gw/crl
pki --gen --type ecdsa --size 256 --outform pem > "$tmp/ca.key"
pki --self --in "$tmp/ca.key" --type ecdsa --dn "O=ipsec-lab, CN=ipsec-lab company CA" --ca \
    --lifetime 7300 --outform pem > "$tmp/ca.pem"
issue() {  # node, then pki --issue options
    node=$1; shift
    cp "$tmp/ca.pem" "$node/x509ca/ca.pem"
    [ -f "$node/private/$node.key" ] || pki --gen --type ecdsa --size 256 --outform pem > "$node/private/$node.key"
    pki --issue --in "$node/private/$node.key" --type priv --cacert "$tmp/ca.pem" --cakey "$tmp/ca.key" \
        --dn "O=ipsec-lab, CN=$node.lab" --san "$node.lab" --outform pem --lifetime 3650 "$@"
}
issue gw --flag serverAuth > gw/x509/gw.pem
issue client1 --flag clientAuth > client1/x509/client1.pem
issue client2 --flag clientAuth > client2/x509/client2.pem
pki --signcrl --cacert "$tmp/ca.pem" --cakey "$tmp/ca.key" --lifetime 3650 \
    --reason key-compromise --cert client1/x509/client1.pem --outform pem > gw/crl/ca.crl
