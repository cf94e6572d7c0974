"""Key material lives only as long as its SA, and leaves the endpoint only when export is
asked (settings.export_keys): after the SAs are gone, no SK_* and no ESP key is reachable from
the endpoint, as raw octets or as hex."""
from __future__ import annotations

import collections
import dataclasses
import gc
import types

from lab.daemon.keys import KeyExport
from lab.ike.endpoint import Settings

from .ike_net import make_net, pair_configs

SK_NAMES = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")
_LEAVES = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.CodeType, int, float,
           complex, bool, type(None))


def reachable(root: object) -> list[object]:
    """Every object reachable from `root` through instances, containers and bound methods (not
    through modules, classes or functions' globals, which reach the whole process)."""
    seen: set[int] = set()
    out: list[object] = []
    todo = collections.deque([root])
    while todo:
        obj = todo.popleft()
        if id(obj) in seen or isinstance(obj, _LEAVES):
            continue
        seen.add(id(obj))
        out.append(obj)
        if isinstance(obj, (bytes, bytearray, str)):
            continue
        if isinstance(obj, types.MethodType):
            todo.append(obj.__self__)
            continue
        todo.extend(gc.get_referents(obj))
    return out


def leaked(root: object, keys: set[bytes]) -> list[str]:
    found = []
    needles = [(k, k.hex()) for k in keys if len(k) >= 8]
    for obj in reachable(root):
        if isinstance(obj, (bytes, bytearray)):
            found += [f"raw {k.hex()[:16]}..." for k, _ in needles if k in obj]
        elif isinstance(obj, str):
            found += [f"hex {h[:16]}..." for _, h in needles if h in obj.lower()]
    return found


def run(export: bool):
    a, b = pair_configs(proposals="aes128-sha256-modp2048", esp="aes128-sha256-x25519")
    net = make_net(a, b, settings=Settings(export_keys=export))
    keys: set[bytes] = set()

    def collect() -> None:
        for endpoint in net.endpoints.values():
            for ike in endpoint.by_id.values():
                if ike.keys is not None:
                    keys.update(getattr(ike.keys, name) for name in SK_NAMES)
                for child in ike.children:
                    keys.update((child.keys_in.encr, child.keys_in.integ, child.keys_out.encr, child.keys_out.integ))

    net.after_step = collect
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    net.endpoints["a"].rekey_child(net.now, "net")
    net.endpoints["b"].rekey_ike(net.now, name="s2s")
    net.settle(30)
    up = {name: net.events(name) for name in "ab"}  # the data plane takes its keys from these
    return net, keys - {b""}, up


def test_no_key_reachable_after_deletion_with_export_off():
    net, keys, _ = run(export=False)
    assert len(keys) >= 7 * 2 + 4 * 2  # two IKE SAs, two CHILD SAs at least
    a = net.endpoints["a"]
    assert a.pop_ike_keys() == []  # export off: never handed out
    assert leaked(a, keys)  # while the SAs live, their keys are there (the search finds them)
    a.terminate(net.now, name="s2s")
    net.settle(30)
    assert a.by_id == {} and net.endpoints["b"].by_id == {}
    for name in "ab":
        net.events(name)
        gc.collect()
        assert leaked(net.endpoints[name], keys) == [], name


def test_export_on_hands_keys_out_once(tmp_path):
    net, keys, up = run(export=True)
    a = net.endpoints["a"]
    export = KeyExport(str(tmp_path))
    export.update_ike(a)
    for event in up["a"]:
        if type(event).__name__ == "ChildSaUp":
            export.add_child(event)
    table = (tmp_path / "wireshark" / "ikev2_decryption_table").read_text()
    assert len(table.splitlines()) == 2  # the first IKE SA and its rekeyed successor
    ike, = a.find()
    assert ike.keys.sk_ei.hex() in table and ike.keys.sk_ar.hex() in table
    esp = (tmp_path / "wireshark" / "esp_sa").read_text()
    assert ike.children[0].keys_out.encr.hex() in esp
    assert a.pop_ike_keys() == []  # handed out once: the endpoint keeps no copy
    a.terminate(net.now, name="s2s")
    net.settle(30)
    net.events("a")
    gc.collect()
    assert leaked(a, keys) == []


def test_settings_default_is_no_export():
    assert Settings().export_keys is False
    assert dataclasses.replace(Settings(), export_keys=True).export_keys


def test_a_restarted_daemon_keeps_the_tables_it_wrote(tmp_path):
    """A scenario's restart or load step starts a new daemon with the same folder: the keys of
    the SAs before it stay in the tables (the run's captures hold their packets)."""
    net, keys, up = run(export=True)
    first = KeyExport(str(tmp_path))
    first.update_ike(net.endpoints["a"])
    events = [e for e in up["a"] if type(e).__name__ == "ChildSaUp"]
    first.add_child(events[0])
    before = (tmp_path / "esp_sa").read_text().splitlines()
    again = KeyExport(str(tmp_path))  # the daemon restarted
    again.add_child(events[-1])
    after = (tmp_path / "wireshark" / "esp_sa").read_text().splitlines()
    assert before and set(before) <= set(after)
    assert (tmp_path / "ikev2_decryption_table").read_text().strip()
