"""The daemon's trace records carry the wall-clock time of their moment ("wall"), the clock
of pcap timestamps, so trace, charon log and captures line up (lab.viz.timeline)."""
from __future__ import annotations

import io
import json
import time

from lab.daemon.gateway import Gateway

from .ike_net import pair_configs


def test_every_trace_record_has_its_wall_time(tmp_path):
    config, _ = pair_configs()
    trace = tmp_path / "trace.jsonl"
    gateway = Gateway(config, trace_path=str(trace), dataplane=False, log=io.StringIO())
    before = time.time()
    gateway.endpoint.initiate("s2s", gateway.now())
    gateway.endpoint.datagrams_to_send()  # no sockets here: what would be sent is dropped
    gateway._pump()
    after = time.time()
    gateway.trace_file.close()
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert records and all(before - 1e-5 <= r["wall"] <= after + 1e-5 for r in records)
    assert records[0]["kind"] == "message" and records[0]["exchange"] == "IKE_SA_INIT"
