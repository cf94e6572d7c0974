"""The IKE configuration objects: strongSwan's defaults (swanctl.conf(5), strongSwan 5.9.8),
value syntax, traffic selectors, pools, and the lookups a responder makes: connection by
addresses then identities, pre-shared key by the best match of both identities."""
from __future__ import annotations

import ipaddress

import pytest

from lab.ike.config import (
    DYNAMIC,
    SaAction,
    AuthClass,
    AuthConfig,
    ChildConfig,
    ChildMode,
    Config,
    ConfigValueError,
    DynamicTrafficSelector,
    Fragmentation,
    HostSpec,
    IkeConfig,
    Pool,
    Secrets,
    SendCert,
    SharedKey,
    Unique,
    decode_secret,
    parse_addrs,
    parse_pool_addrs,
    parse_time,
    parse_traffic_selectors,
)
from lab.ike.identity import Identity
from lab.ike.payloads import TrafficSelector
from lab.ike.proposals import parse_esp_proposals, parse_ike_proposals

P = Identity.parse
ip = ipaddress.ip_address


# ---------------------------------------------------------------- time values

@pytest.mark.parametrize("text,seconds", [
    ("3600", 3600), ("0", 0), ("60s", 60), ("10m", 600), ("4h", 14400), ("1d", 86400), (" 30s ", 30), (90, 90),
])
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "1w", "1.5h", "-5", "h", "10 m", "4H", "ten"])
def test_parse_time_rejects(text):
    with pytest.raises(ConfigValueError, match="write seconds or a number with s, m, h or d"):
        parse_time(text)


# ---------------------------------------------------------------- defaults

def test_child_defaults_are_strongswans():
    child = ChildConfig("net")
    assert child.local_ts == [DYNAMIC] and child.remote_ts == [DYNAMIC]
    assert child.esp_proposals == parse_esp_proposals("default")
    assert child.mode == ChildMode.TUNNEL
    assert (child.rekey_time, child.life_time, child.rand_time) == (3600, 3960, 360)
    assert (child.rekey_bytes, child.life_bytes, child.rand_bytes) == (0, 0, 0)
    assert (child.rekey_packets, child.life_packets, child.rand_packets) == (0, 0, 0)
    assert (child.start_action, child.close_action, child.dpd_action) == (SaAction.NONE, SaAction.NONE, SaAction.NONE)
    assert child.replay_window == 32
    assert (child.copy_df, child.copy_ecn, child.copy_dscp) == (True, True, "out")


def test_child_lifetimes_follow_rekey_time():
    assert (lambda c: (c.life_time, c.rand_time))(ChildConfig("c", rekey_time=1200)) == (1320, 120)
    assert (lambda c: (c.life_time, c.rand_time))(ChildConfig("c", rekey_time=1200, life_time=1800)) == (1800, 600)
    assert ChildConfig("c", rekey_time=1200, rand_time=5).rand_time == 5
    assert (lambda c: (c.life_bytes, c.rand_bytes))(ChildConfig("c", rekey_bytes=1000)) == (1100, 100)
    with pytest.raises(ConfigValueError, match=r"life_time \(600\) is below rekey_time \(1200\)"):
        ChildConfig("c", rekey_time=1200, life_time=600)


def test_child_refuses_unknown_options():
    with pytest.raises(ConfigValueError, match="mode must be one of tunnel, transport"):
        ChildConfig("c", mode="beet")
    with pytest.raises(ConfigValueError, match="dpd_action must be one of none, trap, start"):
        ChildConfig("c", dpd_action="hold-on")


def test_ike_defaults_are_strongswans():
    conn = IkeConfig("c")
    assert conn.version == 2
    assert [str(h) for h in conn.local_addrs] == ["%any"] and [str(h) for h in conn.remote_addrs] == ["%any"]
    assert (conn.local_port, conn.remote_port) == (500, 500)
    assert conn.proposals == parse_ike_proposals("default")
    assert (conn.rekey_time, conn.over_time, conn.rand_time, conn.reauth_time) == (14400, 1440, 1440, 0)
    assert (conn.dpd_delay, conn.dpd_timeout, conn.encap, conn.mobike) == (0, 0, False, True)
    assert conn.fragmentation == Fragmentation.YES
    assert (conn.keyingtries, conn.send_certreq, conn.send_cert, conn.unique) == (1, True, SendCert.IFASKED, Unique.NO)
    assert conn.local.method == AuthClass.PUBKEY and conn.remote.method == AuthClass.PUBKEY
    assert conn.remote_identity.is_any
    assert conn.children == {} and conn.pools == []


def test_ike_reauth_time_turns_rekeying_off_and_sets_over_time():
    conn = IkeConfig("c", reauth_time=86400)
    assert (conn.rekey_time, conn.over_time, conn.rand_time) == (0, 8640, 8640)
    both = IkeConfig("c", reauth_time=3600, rekey_time=7200)
    assert (both.rekey_time, both.over_time) == (7200, 720)
    assert IkeConfig("c", rekey_time=1000, over_time=30).rand_time == 30


def test_ike_refuses_what_ipsec_lab_does_not_do():
    with pytest.raises(ConfigValueError, match="IKEv1 .* not supported by ipsec-lab; use version = 2"):
        IkeConfig("c", version=1)
    with pytest.raises(ConfigValueError, match="fragmentation must be one of yes, accept, force, no"):
        IkeConfig("c", fragmentation="maybe")
    with pytest.raises(ConfigValueError, match="remote_port 0 must be 1-65535"):
        IkeConfig("c", remote_port=0)
    assert IkeConfig("c", version=0).version == 2


# ---------------------------------------------------------------- secrets

@pytest.mark.parametrize("text,secret", [
    ("a-lab-only-psk", b"a-lab-only-psk"),
    ("0x6c6162", b"lab"),
    ("0sbGFi", b"lab"),
    ("0xx", None),
    ("0s!!", None),
    ("x0123", b"x0123"),
])
def test_decode_secret(text, secret):
    if secret is None:
        with pytest.raises(ConfigValueError):
            decode_secret(text)
    else:
        assert decode_secret(text) == secret


def test_secret_is_not_in_repr():
    key = SharedKey("ike-1", b"top-secret-psk", [P("gwa.lab")])
    assert "top-secret" not in repr(key) and "top-secret" not in repr(Secrets([key]))


def _secrets(*entries: tuple[str, list[str]]) -> Secrets:
    return Secrets([SharedKey(name, name.encode(), [P(i) for i in ids]) for name, ids in entries])


def test_find_psk_prefers_the_best_remote_match_then_local():
    secrets = _secrets(("anyone", []), ("wildcard", ["*.lab"]), ("exact", ["gwa.lab", "gwb.lab"]),
                       ("remote-only", ["gwa.lab"]))
    assert secrets.find_psk(P("gwb.lab"), P("gwa.lab")) == b"exact"
    assert secrets.find_psk(P("gwb.lab"), P("gwc.lab")) == b"wildcard"
    # strongSwan credential_manager.c get_shared: the remote id's match weighs first
    assert secrets.find_psk(P("gwb.lab"), P("peer.example")) == b"anyone"
    assert _secrets(("exact", ["gwa.lab", "gwb.lab"])).find_psk(P("gwb.lab"), P("peer.example")) == b"exact"
    assert secrets.find_psk(P("gw.example"), P("peer.example")) == b"anyone"
    assert secrets.find_psk(P("gw.example"), P("x.lab")) == b"wildcard"


def test_find_psk_one_matching_id_is_enough_like_strongswan():
    secrets = _secrets(("only-us", ["gwb.lab"]))
    assert secrets.find_psk(P("gwb.lab"), P("stranger.example")) == b"only-us"
    assert secrets.find_psk(P("gwx.lab"), P("stranger.example")) is None
    assert Secrets().find_psk(P("gwb.lab"), P("gwa.lab")) is None


def test_find_psk_tie_goes_to_the_secret_defined_last():
    # strongSwan mem_cred.c: vici inserts newer secrets first, get_shared keeps the first best
    secrets = _secrets(("first", ["gwa.lab", "gwb.lab"]), ("second", ["gwa.lab", "gwb.lab"]))
    assert secrets.find_psk(P("gwb.lab"), P("gwa.lab")) == b"second"


# ---------------------------------------------------------------- addresses

@pytest.mark.parametrize("text,address,quality", [
    ("%any", "192.0.2.1", 1),
    ("%any", "2001:db8::1", 1),
    ("%any4", "2001:db8::1", 0),
    ("%any6", "2001:db8::1", 1),
    ("192.0.2.1", "192.0.2.1", 33),
    ("192.0.2.1", "192.0.2.2", 0),
    ("192.0.2.0/24", "192.0.2.77", 25),
    ("192.0.2.0/24", "198.51.100.1", 0),
    ("192.0.2.10-192.0.2.20", "192.0.2.15", 1),
    ("192.0.2.10-192.0.2.20", "192.0.2.21", 0),
    ("2001:db8::1", "2001:db8::1", 129),
])
def test_host_spec_match(text, address, quality):
    assert HostSpec.parse(text).match(address) == quality


def test_host_specs_and_initiator_addresses():
    conn = IkeConfig("c", local_addrs=parse_addrs("192.0.2.0/24, 192.0.2.7"),
                     remote_addrs=parse_addrs("198.51.100.0/24, 198.51.100.1-198.51.100.9, 203.0.113.2"))
    assert conn.initiator_remote_address() == ip("203.0.113.2")
    assert conn.initiator_local_address() == ip("192.0.2.7")
    assert IkeConfig("c").initiator_remote_address() is None
    with pytest.raises(ConfigValueError, match="DNS names are not supported by ipsec-lab"):
        parse_addrs("gw.example.org")
    with pytest.raises(ConfigValueError, match="from a lower to a higher address"):
        parse_addrs("192.0.2.9-192.0.2.1")


# ---------------------------------------------------------------- traffic selectors

def ts(start: str, end: str, proto: int = 0, lo: int = 0, hi: int = 65535) -> TrafficSelector:
    return TrafficSelector(ip(start), ip(end), proto, lo, hi)


def test_parse_traffic_selectors():
    assert parse_traffic_selectors("10.1.0.0/24, 10.9.0.1") == [ts("10.1.0.0", "10.1.0.255"),
                                                                ts("10.9.0.1", "10.9.0.1")]
    assert parse_traffic_selectors("10.1.0.7/24") == [ts("10.1.0.0", "10.1.0.255")]
    assert parse_traffic_selectors("10.0.0.5-10.0.0.9[tcp/80-88]") == [ts("10.0.0.5", "10.0.0.9", 6, 80, 88)]
    assert parse_traffic_selectors("0.0.0.0/0[udp/53]") == [ts("0.0.0.0", "255.255.255.255", 17, 53, 53)]
    assert parse_traffic_selectors("%any") == [ts("0.0.0.0", "255.255.255.255"),
                                               ts("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")]
    assert parse_traffic_selectors("%any6") == [ts("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")]
    assert parse_traffic_selectors("2001:db8::/64[47]") == [ts("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", 47)]
    # RFC 4301 §4.4.1.3: OPAQUE is start port 65535, end port 0
    assert parse_traffic_selectors("10.0.0.0/8[udp/opaque]") == [ts("10.0.0.0", "10.255.255.255", 17, 65535, 0)]
    assert parse_traffic_selectors("dynamic") == [DYNAMIC]
    assert parse_traffic_selectors("dynamic[udp/4500]") == [DynamicTrafficSelector(17, 4500, 4500)]


@pytest.mark.parametrize("text,message", [
    ("10.1.0.0/33", "is not a subnet"),
    ("lan", "is not a subnet"),
    ("10.0.0.0/8[foo]", "unknown protocol 'foo'"),
    ("10.0.0.0/8[tcp/http]", "service names are not supported"),
    ("10.0.0.0/8[tcp/90-80]", "low to high"),
    ("10.0.0.0/8[icmp/8]", "ICMP type/code selectors are not supported"),
    ("10.0.0.0/8[tcp", "must end with ']'"),
    ("10.0.0.0/8,", "empty traffic selector"),
])
def test_parse_traffic_selector_errors(text, message):
    with pytest.raises(ConfigValueError, match=message):
        parse_traffic_selectors(text)


def test_dynamic_resolves_to_the_sa_address():
    child = ChildConfig("c", local_ts=parse_traffic_selectors("dynamic[tcp]"),
                        remote_ts=parse_traffic_selectors("dynamic, 10.2.0.0/24"))
    assert child.local_selectors("192.0.2.1") == [ts("192.0.2.1", "192.0.2.1", 6)]
    assert child.remote_selectors("2001:db8::2") == [ts("2001:db8::2", "2001:db8::2"), ts("10.2.0.0", "10.2.0.255")]
    with pytest.raises(ConfigValueError, match="needs the SA's address"):
        child.local_selectors()


# ---------------------------------------------------------------- pools

# strongSwan mem_pool.c mem_pool_create
@pytest.mark.parametrize("text,first,last", [
    ("10.3.0.0/28", "10.3.0.1", "10.3.0.14"),
    ("10.3.0.5/28", "10.3.0.5", "10.3.0.14"),
    ("10.3.0.1-10.3.0.50", "10.3.0.1", "10.3.0.50"),
    ("10.3.0.9/32", "10.3.0.9", "10.3.0.9"),
    ("2001:db8::/126", "2001:db8::1", "2001:db8::2"),
])
def test_pool_addresses_like_strongswan_mem_pool(text, first, last):
    assert parse_pool_addrs(text)[:2] == (ip(first), ip(last))


def test_pool():
    pool = Pool.parse("rw", "10.3.0.0/28", ["10.0.0.53"])
    assert pool.size == 14 and "10.3.0.1" in pool and "10.3.0.15" not in pool and "nonsense" not in pool
    assert pool.dns == [ip("10.0.0.53")]
    with pytest.raises(ConfigValueError, match="neither a CIDR subnet"):
        Pool.parse("rw", "10.3.0.0/33")
    with pytest.raises(ConfigValueError, match="DNS server 'ns1' is not an IP address"):
        Pool.parse("rw", "10.3.0.0/28", ["ns1"])


# ---------------------------------------------------------------- identities used

def test_local_identity_defaults():
    assert AuthConfig().identity_for("192.0.2.1") == Identity.from_address("192.0.2.1")
    assert AuthConfig().identity_for().is_any
    assert AuthConfig(id=P("gwa.lab")).identity_for("192.0.2.1") == P("gwa.lab")
    assert AuthConfig("psk").method == AuthClass.PSK
    assert AuthConfig("eap-mschapv2").method.eap_method == "mschapv2"
    with pytest.raises(ConfigValueError, match="auth must be one of psk, pubkey, eap, eap-md5"):
        AuthConfig("eap-peap")


# ---------------------------------------------------------------- connection lookup

def _conn(name: str, local: str = "%any", remote: str = "%any", local_id: str | None = None,
          remote_id: str | None = None) -> IkeConfig:
    return IkeConfig(name, local_addrs=parse_addrs(local), remote_addrs=parse_addrs(remote),
                     local=AuthConfig("psk", P(local_id) if local_id else None),
                     remote=AuthConfig("psk", P(remote_id) if remote_id else None))


def test_find_connection_by_addresses():
    config = Config({c.name: c for c in (
        _conn("catch-all"),
        _conn("subnet", remote="198.51.100.0/24"),
        _conn("exact", local="203.0.113.2", remote="198.51.100.7"),
        _conn("elsewhere", local="192.0.2.1"),
    )})
    assert config.find_connection_for("203.0.113.2", "198.51.100.7").name == "exact"
    assert config.find_connection_for("203.0.113.2", "198.51.100.8").name == "subnet"
    assert config.find_connection_for("203.0.113.2", "203.0.113.99").name == "catch-all"
    assert [c.name for c in config.connections_for("192.0.2.1", "203.0.113.99")] == ["elsewhere", "catch-all"]
    assert Config().find_connection_for("203.0.113.2", "198.51.100.7") is None


def test_find_connection_narrows_by_identities():
    config = Config({c.name: c for c in (
        _conn("users", remote_id="*@users.lab"),
        _conn("site-a", remote_id="gwa.lab"),
        _conn("site-a-other-face", local_id="vpn2.lab", remote_id="gwa.lab"),
        _conn("anyone", local="203.0.113.2"),
    )})
    # strongSwan backend_manager.c: addresses alone in IKE_SA_INIT, identities first in IKE_AUTH
    assert config.find_connection_for("203.0.113.2", "198.51.100.7").name == "anyone"
    assert config.find_connection_for("203.0.113.2", "198.51.100.7", remote_id=P("gwa.lab")).name == "site-a"
    assert config.find_connection_for("203.0.113.2", "198.51.100.7",
                                      remote_id=P("alice@users.lab")).name == "users"
    assert config.find_connection_for("203.0.113.2", "198.51.100.7", remote_id=P("gwa.lab"),
                                      local_id=P("vpn2.lab")).name == "site-a-other-face"
    assert config.find_connection_for("203.0.113.2", "198.51.100.7",
                                      remote_id=P("stranger.example")).name == "anyone"
    assert config.find_connection_for("192.0.2.1", "198.51.100.7", remote_id=P("stranger.example")) is None


def test_config_find_psk_delegates_to_secrets():
    config = Config(secrets=_secrets(("s", ["gwa.lab"])))
    assert config.find_psk(P("gwb.lab"), P("gwa.lab")) == b"s"
