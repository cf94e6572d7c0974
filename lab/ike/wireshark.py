"""The algorithm names of Wireshark's key tables (`ikev2_decryption_table`, `esp_sa`), as
Wireshark 4.0 reads them: written by lab.daemon.keys, read back by lab.viz.keys.

A view of the one registry (lab.iana), limited to what the lab implements: IKE names for what
SK protection carries out, ESP names for what lab.esp carries out.
"""
from __future__ import annotations

from lab.iana import ALGORITHMS, TransformType

_ENCR, _INTEG = TransformType.ENCR, TransformType.INTEG

# Wireshark's packet-isakmp.c names for IKEv2 encryption (by id and key length) and integrity
IKE_ENCR_NAMES = {(a.id, a.key_bits): a.wireshark_ike for a in ALGORITHMS
                  if a.type == _ENCR and a.ike and a.wireshark_ike}
IKE_INTEG_NAMES = {a.id: a.wireshark_ike for a in ALGORITHMS if a.type == _INTEG and a.ike and a.wireshark_ike}
# Wireshark's packet-esp.c names (one per cipher, whatever its key length)
ESP_ENCR_NAMES = {a.id: a.wireshark_esp for a in ALGORITHMS if a.type == _ENCR and a.esp and a.wireshark_esp}
ESP_INTEG_NAMES = {a.id: a.wireshark_esp for a in ALGORITHMS if a.type == _INTEG and a.esp and a.wireshark_esp}
