"""The analysis and the ladder of an RFC 9370 handshake: IKE_INTERMEDIATE named, each message
decrypted with the keys in force for it (RFC 9370 §2.2.2), fragments included; tshark reads the
capture without calling IKE_INTERMEDIATE malformed."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from lab.ike.memnet import make_net, pair_configs
from lab.ike.settings import Settings
from lab.viz.analysis import analyze_capture
from lab.viz.explain import describe_message
from lab.viz.keys import keys_from_memory, load_keys, write_key_tables
from lab.viz.ladder import _label
from lab.viz.memory import write_memnet_capture


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pq")
    net = make_net(*pair_configs(proposals="aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_ecp384"),
                   settings=Settings(export_keys=True, fragment_size=1280))
    net.endpoints["a"].initiate("s2s", net.now)
    net.settle()
    pcap = write_memnet_capture(net, folder / "pq.pcap")
    write_key_tables(keys_from_memory(net.endpoints.values()), folder / "keys")
    return pcap, folder / "keys", [d for _, _, d in net.log]


def test_ladder_decrypts_each_message_with_the_keys_in_force(hybrid_run):
    pcap, keys, _ = hybrid_run
    assert len(load_keys(keys).ike_sa_generations(*next(iter(load_keys(keys).ike)))) == 3
    labels = [_label(p)[:2] for p in analyze_capture(pcap, keys).packets]
    assert labels[2:] == [
        ("IKE_INTERMEDIATE request 1  (keys of IKE_SA_INIT)  (SKF 1/2)", "SKF{ ... } (part of the message)"),
        ("IKE_INTERMEDIATE request 1  (keys of IKE_SA_INIT)  (SKF 2/2)", "SKF{ KE }"),
        ("IKE_INTERMEDIATE response 1  (keys of IKE_SA_INIT)", "SK{ KE }"),
        ("IKE_INTERMEDIATE request 2  (keys after ADDKE1)", "SK{ KE }"),
        ("IKE_INTERMEDIATE response 2  (keys after ADDKE1)", "SK{ KE }"),
        ("IKE_AUTH request 3  (keys after ADDKE2)", "SK{ IDi IDr AUTH N(INIT_CONTACT) N(MOBIKE_SUP) SA TSi TSr }"),
        ("IKE_AUTH response 3  (keys after ADDKE2)", "SK{ IDr AUTH N(MOBIKE_SUP) SA TSi TSr }")]
    assert labels[0][1].endswith("N(IKE_INT_SUP)")


def test_explain_names_the_keys_each_message_opened_with(hybrid_run):
    _, keys, log = hybrid_run
    tables = load_keys(keys)
    # the response of IKE_INTERMEDIATE 1, the request of 2, the IKE_AUTH request (fragments are not opened here)
    texts = [describe_message(d.data, d.dst[1], tables) for d in log[4:]]
    assert "decrypted with SK_er/SK_ar of IKE_SA_INIT" in texts[0]
    assert "decrypted with SK_ei/SK_ai after additional key exchange 1" in texts[1]
    assert "decrypted with SK_ei/SK_ai after additional key exchange 2" in texts[3]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_does_not_call_ike_intermediate_malformed(hybrid_run, tmp_path):
    pcap, _, _ = hybrid_run
    run = subprocess.run(["tshark", "-r", str(pcap), "-n", "-T", "fields", "-e", "isakmp.exchangetype",
                          "-Y", "isakmp && !_ws.malformed && !_ws.expert.severity >= warning"],
                         capture_output=True, text=True, env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
                                                              "PATH": "/usr/bin:/bin"}, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["34", "34", "43", "43", "43", "43", "43", "35", "35"]
