"""Under attack the daemon's narrated log and its trace stay small: repeated lines are
summarised ("... 1234 more like this in the last 10 s"), lines of other kinds still come
through one by one, and no count is lost."""
from __future__ import annotations

import io
import json
import re

from lab.daemon.gateway import Gateway
from lab.daemon.narrate import Summariser, line_kind
from lab.ike.endpoint import Settings
from lab.ike.memnet import GW_A, GW_B, make_net, pair_configs


def more(lines: list[str]) -> int:
    return sum(int(m.group(1)) for line in lines if (m := re.search(r"\.\.\. (\d+) more like this", line)))


def test_lines_of_one_kind_differ_only_in_numbers_spis_and_addresses():
    assert line_kind("[IKE] #12 received IKE_SA_INIT request 0 [ SA KE No ] <- 198.51.100.7:4711") == \
        line_kind("[IKE] #3 received IKE_SA_INIT request 0 [ SA KE No ] <- 203.0.113.9:500")
    assert line_kind("[NET] #- dropped: unknown IKE SPI c0ffee1234567890") == \
        line_kind("[NET] #- dropped: unknown IKE SPI 0011223344556677")
    assert line_kind("[NET] #- dropped: unknown IKE SPI") != line_kind("[NET] #- dropped: malformed: offset 3")


def test_a_burst_passes_the_rest_is_counted_and_summarised_when_the_window_ends():
    summary = Summariser(burst=3, window=10)
    out = []
    for i in range(100):
        out += summary.add(f"[NET] #- dropped: unknown IKE SPI {i:016x}", i * 0.05)
    out += summary.add("[IKE] #1 IKE_SA s2s established", 5.0)  # another kind comes through at once
    assert len(out) == 4 and out[-1].endswith("established") and summary.held == 97
    assert summary.due() == 10.0
    out += summary.add("[NET] #- dropped: unknown IKE SPI ffffffffffffffff", 10.5)  # a new window
    assert out[4] == "[NET] #- dropped: unknown IKE SPI 0000000000000000 ... 97 more like this in the last 10 s"
    assert out[5].endswith("ffffffffffffffff") and summary.held == 0
    assert summary.flush(11, everything=True) == []


def test_a_flood_of_requests_writes_a_few_lines_and_loses_no_count(tmp_path):
    # 20,000 IKE_SA_INIT requests in a minute, every one answered with a COOKIE: two log lines
    # each without the summary, a few per window with it
    a, b = pair_configs(b_remote_addrs="%any")
    net = make_net(a, b)
    net.endpoints["a"].initiate("s2s", 0.0)
    (request,) = net.endpoints["a"].datagrams_to_send()
    log, trace = io.StringIO(), tmp_path / "trace.jsonl"
    gateway = Gateway(b, settings=Settings(cookie_threshold=0), trace_path=str(trace), dataplane=False, log=log)
    clock = [0.0]
    gateway.now = lambda: clock[0]
    flood = 20000
    for i in range(flood):
        clock[0] = i * 0.003
        spoofed = (f"192.0.2.{i % 250 + 1}", 1024 + i % 3000)
        gateway.endpoint.receive_datagram((i + 1).to_bytes(8, "big") + request.data[8:], spoofed, (GW_B, 500), clock[0])
        if i % 64 == 63:
            gateway.endpoint.datagrams_to_send()  # no sockets here
            gateway._pump()
    gateway.endpoint.datagrams_to_send()
    gateway._pump()
    gateway._write_summaries(everything=True)
    gateway.trace_file.close()
    lines = log.getvalue().splitlines()
    assert gateway.endpoint.stats["cookies_sent"] == flood, (gateway.endpoint.drops, gateway.endpoint.stats)
    windows = 60 // 10 + 1
    assert len(lines) <= 2 * (10 + 1) * windows, lines[:20]  # two kinds of line, 10 each and a summary
    received = [line for line in lines if "received IKE_SA_INIT request" in line]
    sent = [line for line in lines if "sending IKE_SA_INIT response" in line and "N(COOKIE)" in line]
    assert len([x for x in received if "more like this" not in x]) + more(received) == flood
    assert len([x for x in sent if "more like this" not in x]) + more(sent) == flood
    assert any("more like this in the last 10 s" in line for line in lines)
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(records) <= 2 * (10 + 1) * windows
    kept = sum(1 for r in records if r["kind"] == "message")
    assert kept + sum(r["more"] for r in records if r["kind"] == "summary") == 2 * flood


def test_an_exchange_of_a_legitimate_peer_is_logged_whole():
    a, b = pair_configs()
    net = make_net(a, b)
    log = io.StringIO()
    gateway = Gateway(b, dataplane=False, log=log)
    gateway.endpoint = net.endpoints["b"]
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    gateway._pump()
    text = log.getvalue()
    assert "IKE_SA s2s established" in text and "CHILD_SA net established" in text
    assert "more like this" not in text
    assert GW_A in text
