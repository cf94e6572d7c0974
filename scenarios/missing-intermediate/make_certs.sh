#!/bin/sh
# Makes this scenario's certificates with strongSwan's pki (ECDSA P-256): the company's root CA
# (every node trusts it: x509ca/root.pem), an intermediate CA below it that issues the servers'
# certificates ("ipsec-lab servers CA", path length 0), gw's certificate from the intermediate,
# and the two laptops' certificates, issued by the root here to keep the lesson to one chain.
# The intermediate waits in hosts/gw/chain/ until the scenario installs it. Run once from
# anywhere; the files are kept with the scenario.
set -e
cd "$(dirname "$0")/hosts"
pki() { command pki "$@" 2>/dev/null; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for node in gw client1 client2; do mkdir -p "$node/x509ca" "$node/x509" "$node/private"; done
mkdir -p gw/chain
pki --gen --type ecdsa --size 256 --outform pem > "$tmp/root.key"
pki --self --in "$tmp/root.key" --type ecdsa --dn "O=ipsec-lab, CN=ipsec-lab root CA" --ca \
    --lifetime 7300 --outform pem > "$tmp/root.pem"
pki --gen --type ecdsa --size 256 --outform pem > "$tmp/servers.key"
pki --issue --in "$tmp/servers.key" --type priv --cacert "$tmp/root.pem" --cakey "$tmp/root.key" \
    --dn "O=ipsec-lab, CN=ipsec-lab servers CA" --ca --pathlen 0 --lifetime 5475 --outform pem \
    > gw/chain/servers-ca.pem
issue() {  # node, issuing CA (file stem in $tmp or gw/chain), then pki --issue options
    node=$1; cacert=$2; cakey=$3; shift 3
    cp "$tmp/root.pem" "$node/x509ca/root.pem"
    [ -f "$node/private/$node.key" ] || pki --gen --type ecdsa --size 256 --outform pem > "$node/private/$node.key"
    pki --issue --in "$node/private/$node.key" --type priv --cacert "$cacert" --cakey "$cakey" \
        --dn "O=ipsec-lab, CN=$node.lab" --san "$node.lab" --outform pem --lifetime 3650 "$@"
}
issue gw gw/chain/servers-ca.pem "$tmp/servers.key" --flag serverAuth > gw/x509/gw.pem
issue client1 "$tmp/root.pem" "$tmp/root.key" --flag clientAuth > client1/x509/client1.pem
issue client2 "$tmp/root.pem" "$tmp/root.key" --flag clientAuth > client2/x509/client2.pem
