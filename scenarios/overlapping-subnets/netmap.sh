#!/bin/sh
# NETMAP in front of the tunnel, run on a gateway: netmap.sh OWN_RANGE PEER_RANGE OWN_ADDRESS.
# Packets from our LAN (192.168.1.0/24) to the other office's range leave with their source
# mapped one to one into OWN_RANGE (192.168.1.10 -> 10.x.0.10); packets from the other office
# to OWN_RANGE come in with their destination mapped back. Replies follow by conntrack.
# OWN_ADDRESS, one address of OWN_RANGE, goes on the loopback: strongSwan (kernel-libipsec)
# installs the tunnel's route with a source address from local_ts and refuses the CHILD_SA
# without one.
set -e
own=$1 peer=$2 address=$3
iptables -t nat -A POSTROUTING -s 192.168.1.0/24 -d "$peer" -j NETMAP --to "$own"
iptables -t nat -A PREROUTING -s "$peer" -d "$own" -j NETMAP --to 192.168.1.0/24
ip address add "$address/32" dev lo
