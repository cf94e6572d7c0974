"""lab.net: the lab. Mininet topologies with NAT boxes and routers with knobs (nodes, topology,
impair), a running lab torn down completely on stop, failure and Ctrl-C (lab, cleanup, capture),
the gateway software that runs in it behind one Peer interface (peers, software: ours in
gateway, strongSwan in strongswan), and scenarios: a file read and checked before anything
starts (scenario, fields), its step and check kinds (steps, checks: one registry entry each),
the runner that plays it (runner) and the run folder it leaves (folder, report; the schema is
lab.runfolder). The scenario reference in scenarios/README.md is generated from the registries
(reference).

Above lab.daemon; lab.viz reads what it writes and never imports it.
"""
