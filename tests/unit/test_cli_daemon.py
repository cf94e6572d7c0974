"""`ipsec-lab daemon` options that reach the endpoint's Settings."""
from __future__ import annotations

import pytest

from lab.cli import build_parser
from lab.ike.endpoint import Settings


def test_retransmit_options_are_parsed():
    args = build_parser().parse_args(["daemon", "--config", "swanctl.conf", "--retransmit-timeout", "0.5",
                                      "--retransmit-tries", "2"])
    assert (args.retransmit_timeout, args.retransmit_tries) == (0.5, 2)


def test_retransmit_defaults_are_charons():
    args = build_parser().parse_args(["daemon", "--config", "swanctl.conf"])
    assert args.retransmit_timeout is None and args.retransmit_tries is None
    assert (Settings().retransmit_timeout, Settings().retransmit_tries) == (4.0, 5)


@pytest.mark.parametrize("option, value", [("--retransmit-timeout", "0"), ("--retransmit-timeout", "soon"),
                                           ("--retransmit-tries", "-1")])
def test_bad_retransmit_values_are_refused(option, value, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["daemon", "--config", "swanctl.conf", option, value])
    assert option in capsys.readouterr().err


def test_daemon_passes_the_settings(monkeypatch):
    import os

    import lab.daemon.gateway as gateway
    from lab.cli import main

    seen = {}
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(gateway, "run_gateway", lambda *args, **kwargs: seen.setdefault("args", args) and 0)
    main(["daemon", "--config", "swanctl.conf", "--retransmit-timeout", "0.25", "--retransmit-tries", "1"])
    settings = seen["args"][-1]
    assert (settings.retransmit_timeout, settings.retransmit_tries) == (0.25, 1)


def test_limit_options_reach_the_settings(monkeypatch):
    import os
    import re

    import lab.daemon.gateway as gateway
    from lab.cli import LIMIT_OPTIONS, main

    seen = {}
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(gateway, "run_gateway", lambda *args, **kwargs: seen.setdefault("args", args) and 0)
    values = {"half_open_timeout": "3.5", "half_open_limit": "7", "half_open_per_peer": "2", "ike_sas_per_peer": "9",
              "max_packet": "4000", "max_fragments": "8", "reassembly_buffers": "11"}
    argv = ["daemon", "--config", "swanctl.conf"]
    for option, field, _kind, text in LIMIT_OPTIONS:
        argv += [option, values[field]]
        # the default the help names is the one Settings has
        default = re.search(r"default (\d+)", text).group(1)
        assert float(default) == getattr(Settings(), field), (option, text)
    main(argv)
    settings = seen["args"][-1]
    assert {field: getattr(settings, field) for field in values} == {
        "half_open_timeout": 3.5, "half_open_limit": 7, "half_open_per_peer": 2, "ike_sas_per_peer": 9,
        "max_packet": 4000, "max_fragments": 8, "reassembly_buffers": 11}


def test_limit_options_are_in_the_help_and_refuse_bad_values(capsys):
    from lab.cli import LIMIT_OPTIONS

    with pytest.raises(SystemExit):
        build_parser().parse_args(["daemon", "--help"])
    text = capsys.readouterr().out
    for option, *_ in LIMIT_OPTIONS:
        assert option in text
        with pytest.raises(SystemExit):
            build_parser().parse_args(["daemon", "--config", "x", option, "-1"])
        assert option in capsys.readouterr().err
