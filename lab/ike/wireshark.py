"""The algorithm names of Wireshark's key tables (`ikev2_decryption_table`, `esp_sa`), as
Wireshark 4.0 reads them: written by lab.daemon.keys, read back by lab.viz.keys."""
from __future__ import annotations

from .const import EncrId, IntegId

# Wireshark's packet-isakmp.c names for IKEv2 encryption and integrity
IKE_ENCR_NAMES = {
    (EncrId.AES_CBC, 128): "AES-CBC-128 [RFC3602]",
    (EncrId.AES_CBC, 192): "AES-CBC-192 [RFC3602]",
    (EncrId.AES_CBC, 256): "AES-CBC-256 [RFC3602]",
    (EncrId.AES_GCM_8, 128): "AES-GCM-128 with 8 octet ICV [RFC5282]",
    (EncrId.AES_GCM_8, 192): "AES-GCM-192 with 8 octet ICV [RFC5282]",
    (EncrId.AES_GCM_8, 256): "AES-GCM-256 with 8 octet ICV [RFC5282]",
    (EncrId.AES_GCM_12, 128): "AES-GCM-128 with 12 octet ICV [RFC5282]",
    (EncrId.AES_GCM_12, 192): "AES-GCM-192 with 12 octet ICV [RFC5282]",
    (EncrId.AES_GCM_12, 256): "AES-GCM-256 with 12 octet ICV [RFC5282]",
    (EncrId.AES_GCM_16, 128): "AES-GCM-128 with 16 octet ICV [RFC5282]",
    (EncrId.AES_GCM_16, 192): "AES-GCM-192 with 16 octet ICV [RFC5282]",
    (EncrId.AES_GCM_16, 256): "AES-GCM-256 with 16 octet ICV [RFC5282]",
}
IKE_INTEG_NAMES = {
    IntegId.NONE: "NONE [RFC4306]",
    IntegId.HMAC_SHA1_96: "HMAC_SHA1_96 [RFC2404]",
    IntegId.HMAC_SHA2_256_128: "HMAC_SHA2_256_128 [RFC4868]",
    IntegId.HMAC_SHA2_384_192: "HMAC_SHA2_384_192 [RFC4868]",
    IntegId.HMAC_SHA2_512_256: "HMAC_SHA2_512_256 [RFC4868]",
}
# Wireshark's packet-esp.c names
ESP_ENCR_NAMES = {
    EncrId.NULL: "NULL",
    EncrId.AES_CBC: "AES-CBC [RFC3602]",
    EncrId.AES_GCM_8: "AES-GCM with 8 octet ICV [RFC4106]",
    EncrId.AES_GCM_12: "AES-GCM with 12 octet ICV [RFC4106]",
    EncrId.AES_GCM_16: "AES-GCM with 16 octet ICV [RFC4106]",
    EncrId.CHACHA20_POLY1305: "ChaCha20 with Poly1305 [RFC7634]",
}
ESP_INTEG_NAMES = {
    IntegId.NONE: "NULL",
    IntegId.HMAC_SHA1_96: "HMAC-SHA-1-96 [RFC2404]",
    IntegId.HMAC_SHA2_256_128: "HMAC-SHA-256-128 [RFC4868]",
    IntegId.HMAC_SHA2_384_192: "HMAC-SHA-384-192 [RFC4868]",
    IntegId.HMAC_SHA2_512_256: "HMAC-SHA-512-256 [RFC4868]",
}
