"""lab.daemon: the gateway process (`ipsec-lab daemon`), one per gateway namespace.

It wraps the sans-I/O cores in I/O: UDP 500/4500 sockets and a clock around lab.ike's
IkeEndpoint (gateway), the userspace ESP/AH data plane between a TUN device and the wire around
lab.esp (dataplane, offload), the routes, virtual IPs and shunts it installs with ip(8)
(addresses and the routing side of the data plane), the control socket and the `ctl` client
(control), the exported Wireshark key tables (keys) and the narrated log (narrate).

Above lab.ike, lab.esp and lab.conf; below lab.net, which starts it in a Mininet node.
"""
