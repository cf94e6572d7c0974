"""The ipsec-lab { eap-radius { } } section of a scenario's swanctl.conf becomes charon's
charon.plugins.eap-radius in strongswan.conf (with the eap-radius plugin loaded), so one
swanctl.conf serves our daemon and charon as gateway; without the section nothing changes."""
from __future__ import annotations

from pathlib import Path

from lab.net.strongswan import plugin_settings_of, render_strongswan_conf

FAILOVER = Path(__file__).resolve().parents[2] / "scenarios" / "radius-failover" / "hosts" / "gw" / "swanctl.conf"


def test_the_section_is_taken_whole_with_its_servers():
    settings = plugin_settings_of(FAILOVER.read_text())["eap-radius"]
    assert settings["retransmit_tries"] == "3"
    assert settings["servers"]["server2"]["address"] == "10.2.0.11", settings


def test_strongswan_conf_loads_the_plugin_and_its_settings():
    conf = render_strongswan_conf("/tmp/x.vici", "/tmp/x.log", plugin_settings=plugin_settings_of(FAILOVER.read_text()))
    load = next(line for line in conf.splitlines() if line.strip().startswith("load =") and "charon" not in line)
    assert "eap-radius" in load.split()
    plugins = conf[conf.index("  plugins {"):conf.index("  filelog {")]
    assert "    eap-radius {" in plugins and "preference = 10" in plugins
    assert plugins.count("{") == plugins.count("}")


def test_no_section_no_plugin():
    assert plugin_settings_of("connections {\n}\n") == {}
    assert plugin_settings_of("ipsec-lab {\n  export_keys = /tmp\n}\n") == {}
    conf = render_strongswan_conf("/tmp/x.vici", "/tmp/x.log")
    assert "eap-radius" not in conf
