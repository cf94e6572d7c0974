"""strongSwan proposal strings, both ways, and responder-side proposal selection.

Expected transform ids are written out from the IANA "IKEv2 Parameters" registry
(Transform Types 1-5), not taken from the module's own tables.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.ike import payloads as p
from lab.ike.proposals import (
    ChosenAlgorithms,
    check_implemented,
    ProposalError,
    format_proposal,
    format_proposals,
    format_transform,
    initiator_dh_group,
    invalid_ke_group,
    known_keywords,
    parse_ah_proposal,
    parse_ah_proposals,
    parse_esp_proposal,
    parse_esp_proposals,
    parse_ike_proposal,
    parse_ike_proposals,
    promote_dh_group,
    proposal_dh_groups,
    responder_dh_group,
    select_proposal,
)


def many(n: int):
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def shape(proposal: p.Proposal) -> list[tuple[int, int, int | None]]:
    """(transform type, transform id, key length) of each transform, in wire order."""
    out = []
    for t in proposal.transforms:
        attrs = [(a.attr_type, a.value) for a in t.attributes]
        assert attrs in ([], [(14, t.key_length)]), attrs
        out.append((int(t.transform_type), int(t.transform_id), t.key_length))
    return out


# IANA: type 1 ENCR (12 AES-CBC, 20 AES-GCM-16, 28 ChaCha20-Poly1305, 11 NULL), type 2 PRF
# (5 HMAC_SHA2_256, 6 HMAC_SHA2_384), type 3 INTEG (12 HMAC_SHA2_256_128, 13 HMAC_SHA2_384_192),
# type 4 DH (14 MODP-2048, 20 ECP-384, 31 Curve25519), type 5 ESN (0 none, 1 ESN).
IKE_CASES = [
    ("aes128gcm16-prfsha256-x25519", [(1, 20, 128), (2, 5, None), (4, 31, None)]),
    ("aes256-sha384-ecp384", [(1, 12, 256), (2, 6, None), (3, 13, None), (4, 20, None)]),
    ("chacha20poly1305-prfsha256-x25519", [(1, 28, None), (2, 5, None), (4, 31, None)]),
    ("aes128-sha256-modp2048", [(1, 12, 128), (2, 5, None), (3, 12, None), (4, 14, None)]),
]
ESP_CASES = [
    ("aes128gcm16", [(1, 20, 128), (5, 0, None)]),
    ("aes128-sha256", [(1, 12, 128), (3, 12, None), (5, 0, None)]),
    ("aes256gcm16-esn", [(1, 20, 256), (5, 1, None)]),
    ("null-sha256", [(1, 11, None), (3, 12, None), (5, 0, None)]),
]


@pytest.mark.parametrize("text, expected", IKE_CASES)
def test_ike_examples_both_ways(text, expected):
    proposal = parse_ike_proposal(text)
    assert proposal.number == 1 and proposal.protocol_id == 1 and proposal.spi == b""
    assert shape(proposal) == expected
    assert format_proposal(proposal) == text


@pytest.mark.parametrize("text, expected", ESP_CASES)
def test_esp_examples_both_ways(text, expected):
    proposal = parse_esp_proposal(text)
    assert proposal.number == 1 and proposal.protocol_id == 3 and proposal.spi == b""
    assert shape(proposal) == expected
    assert format_proposal(proposal) == text


def test_explicit_format_shows_derived_prf_and_noesn():
    assert format_proposal(parse_ike_proposal("aes256-sha384-ecp384"), explicit=True) == \
        "aes256-sha384-prfsha384-ecp384"
    assert format_proposal(parse_esp_proposal("aes128-sha256"), explicit=True) == "aes128-sha256-noesn"


def test_transform_keywords_from_ids():
    # IANA ids written out: ENCR 20 keylen 128, PRF 5, DH 31, ESN 1 / 0
    gcm = p.Transform(1, 20, [p.TransformAttribute(14, 128)])
    assert format_transform(gcm) == "aes128gcm16"
    assert format_transform(p.Transform(2, 5)) == "prfsha256"
    assert format_transform(p.Transform(4, 31)) == "x25519"
    assert format_transform(p.Transform(5, 1)) == "esn"
    assert format_transform(p.Transform(5, 0)) == "noesn"
    assert format_transform(p.Transform(3, 14)) == "sha512"
    assert format_transform(p.Transform(4, 28)) == "ecp256bp"


def test_unknown_ids_format_without_crashing():
    weird = p.Proposal(1, 3, b"\x01\x02\x03\x04", [
        p.Transform(1, 99), p.Transform(1, 12, [p.TransformAttribute(14, 64)]),
        p.Transform(3, 200), p.Transform(4, 4242), p.Transform(13, 1),
    ])
    assert format_proposal(weird) == "ENCR(99)-ENCR(12)_64-INTEG(200)-DH(4242)-TRANSFORM13(1)"
    with pytest.raises(ProposalError):
        parse_esp_proposal(format_proposal(weird))


def test_additional_key_exchanges_of_rfc_9370():
    # RFC 9370 §2.2.1: Additional Key Exchange 1..7 are transform types 6..12
    proposal = parse_ike_proposal("aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024")
    assert [(int(t.transform_type), int(t.transform_id)) for t in proposal.transforms][-2:] == [(6, 36), (7, 37)]
    assert format_proposal(proposal) == "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_mlkem1024"
    assert format_proposal(p.Proposal(1, 1, b"", [p.Transform(9, 1)])) == "ke4_modp768"
    for bad in ("ke8_mlkem768", "ke1_sha256", "ke1_"):
        with pytest.raises(ProposalError):
            parse_ike_proposal(f"aes128-sha256-x25519-{bad}")
    assert check_implemented([proposal]) == [proposal]
    assert format_proposal(parse_ike_proposal("aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_ecp384")) == \
        "aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke2_ecp384"
    assert check_implemented([parse_ike_proposal("aes128gcm16-prfsha256-x25519-ke1_none-ke1_mlkem1024")])


@pytest.mark.parametrize("text, hint", [
    ("ke1_mlkemm768", "did you mean 'ke1_mlkem768'"),
    ("ke8_mlkem768", "ke1_ .. ke7_, not ke8_"),
    ("ke1_sha256", "sha256 is no key exchange method"),
])
def test_additional_key_exchange_typos_are_named(text, hint):
    with pytest.raises(ProposalError, match=hint):
        parse_ike_proposal(f"aes256gcm16-prfsha384-x25519-{text}")


def test_additional_key_exchanges_refused_where_ipsec_lab_cannot_run_them():
    with pytest.raises(ProposalError, match="ke1_mlkem512 is not implemented"):
        check_implemented([parse_ike_proposal("aes256gcm16-prfsha384-x25519-ke1_mlkem512")])
    # RFC 9370 §2.2.4: a CHILD SA's additional key exchanges run in IKE_FOLLOWUP_KE
    assert check_implemented(parse_esp_proposals("aes256gcm16-x25519-ke1_ecp384"))
    with pytest.raises(ProposalError, match="ke1_mlkem512 is not implemented"):
        check_implemented(parse_esp_proposals("aes256gcm16-x25519-ke1_mlkem512"))


@pytest.mark.parametrize("text, token", [("aes256gcm16-ke1_mlkem768", "ke1_mlkem768"),
                                         ("aes128-sha256-ke2_ecp384", "ke2_ecp384"),
                                         ("aes256gcm16-modpnone-ke1_x25519", "ke1_x25519")])
def test_additional_key_exchanges_of_a_child_sa_need_a_key_exchange_method(text, token):
    # RFC 9370 §2.2.4: they run in IKE_FOLLOWUP_KE after the KE payload of CREATE_CHILD_SA
    with pytest.raises(ProposalError, match="needs a key exchange method in the same proposal") as info:
        parse_esp_proposals(text)
    assert info.value.token == token
    # optional ones alone (ke1_none) add nothing to run, and a proposal with a method is fine
    assert parse_esp_proposals("aes128-sha256-ke1_none")
    assert parse_esp_proposals(text.replace(token, "ecp256-" + token))


def test_selection_of_additional_key_exchanges():
    # RFC 9370 §2.2.1: optional (with none) ones fall away at a peer without them; required ones fail
    mine = [parse_ike_proposal("aes256gcm16-prfsha384-x25519-ke1_mlkem768")]
    assert select_proposal(mine, [parse_ike_proposal("aes256gcm16-prfsha384-x25519")]) is None
    optional = [parse_ike_proposal("aes256gcm16-prfsha384-x25519-ke1_mlkem768-ke1_none")]
    chosen = select_proposal(optional, [parse_ike_proposal("aes256gcm16-prfsha384-x25519")])
    assert ChosenAlgorithms.from_proposal(chosen).additional == ()
    both = select_proposal(mine, [parse_ike_proposal("aes256gcm16-prfsha384-x25519-ke1_mlkem1024-ke1_mlkem768")])
    assert ChosenAlgorithms.from_proposal(both).additional == ((6, 36),)
    assert str(ChosenAlgorithms.from_proposal(both)) == "aes256gcm16-prfsha384-x25519-ke1_mlkem768"


@pytest.mark.parametrize("text, canonical, expected", [
    ("aes", "aes128-sha256-modp2048", (1, 12, 128)),
    ("aes128gcm", "aes128gcm16-prfsha256-modp2048", (1, 20, 128)),
    ("aes256gcm128", "aes256gcm16-prfsha256-modp2048", (1, 20, 256)),
    ("aes192gcm64", "aes192gcm8-prfsha256-modp2048", (1, 18, 192)),
    ("aes128gcm96", "aes128gcm12-prfsha256-modp2048", (1, 19, 128)),
    ("aes256ccm", "aes256ccm16-prfsha256-modp2048", (1, 16, 256)),
    ("aes128ccm64", "aes128ccm8-prfsha256-modp2048", (1, 14, 128)),
    ("aes192ctr", "aes192ctr-sha256-modp2048", (1, 13, 192)),
    ("camellia", "camellia128-sha256-modp2048", (1, 23, 128)),
    ("camellia256ctr", "camellia256ctr-sha256-modp2048", (1, 24, 256)),
    ("camellia192ccm96", "camellia192ccm12-prfsha256-modp2048", (1, 26, 192)),
    ("3des", "3des-sha256-modp2048", (1, 3, None)),
])
def test_encryption_aliases(text, canonical, expected):
    integ = "-prfsha256" if "gcm" in text or "ccm" in text else "-sha256"
    proposal = parse_ike_proposal(text + integ + "-modp2048")
    assert shape(proposal)[0] == expected
    assert format_proposal(proposal) == canonical


@pytest.mark.parametrize("token, integ_id, prf_id", [
    ("sha", 2, 2), ("sha1", 2, 2), ("sha2_256", 12, 5), ("sha384", 13, 6), ("sha2_512", 14, 7),
    ("md5", 1, 1), ("aesxcbc", 5, 4), ("aescmac", 8, 8), ("sha1_160", 7, 2), ("md5_128", 6, 1),
])
def test_ike_prf_derived_from_integrity(token, integ_id, prf_id):
    assert shape(parse_ike_proposal(f"aes128-{token}-modp2048")) == [
        (1, 12, 128), (2, prf_id, None), (3, integ_id, None), (4, 14, None)]


@pytest.mark.parametrize("token, group", [
    ("modp768", 1), ("modp1024", 2), ("modp1536", 5), ("modp2048", 14), ("modp3072", 15), ("modp4096", 16),
    ("modp6144", 17), ("modp8192", 18), ("ecp256", 19), ("ecp384", 20), ("ecp521", 21), ("modp1024s160", 22),
    ("modp2048s224", 23), ("modp2048s256", 24), ("ecp192", 25), ("ecp224", 26), ("ecp224bp", 27),
    ("ecp256bp", 28), ("ecp384bp", 29), ("ecp512bp", 30), ("x25519", 31), ("curve25519", 31),
    ("x448", 32), ("curve448", 32),
])
def test_dh_keywords(token, group):
    assert proposal_dh_groups(parse_ike_proposal(f"aes128gcm16-prfsha256-{token}")) == [group]


@pytest.mark.parametrize("token, prf_id", [
    ("prfmd5", 1), ("prfsha1", 2), ("prfaesxcbc", 4), ("prfsha256", 5), ("prfsha384", 6), ("prfsha512", 7),
    ("prfaescmac", 8),
])
def test_prf_keywords(token, prf_id):
    assert shape(parse_ike_proposal(f"aes128gcm16-{token}-x25519"))[1] == (2, prf_id, None)


def test_several_algorithms_of_each_type_keep_their_order():
    proposal = parse_ike_proposal("aes128-aes256-sha256-sha384-modp2048-ecp256")
    assert shape(proposal) == [(1, 12, 128), (1, 12, 256), (2, 5, None), (2, 6, None),
                               (3, 12, None), (3, 13, None), (4, 14, None), (4, 19, None)]
    assert format_proposal(proposal) == "aes128-aes256-sha256-sha384-modp2048-ecp256"
    assert parse_ike_proposal("aes128-sha256-modp2048-aes256-sha384-ecp256") == proposal


def test_explicit_prf_is_kept_and_printed():
    proposal = parse_ike_proposal("aes128-sha256-prfsha384-x25519")
    assert shape(proposal) == [(1, 12, 128), (2, 6, None), (3, 12, None), (4, 31, None)]
    assert format_proposal(proposal) == "aes128-sha256-prfsha384-x25519"


def test_aead_ike_takes_prf_from_integrity_then_drops_integrity():
    # strongSwan derives the PRF before removing integrity algorithms from an AEAD proposal
    assert shape(parse_ike_proposal("aes128gcm16-sha256-x25519")) == [(1, 20, 128), (2, 5, None), (4, 31, None)]
    assert shape(parse_esp_proposal("aes128gcm16-sha256")) == [(1, 20, 128), (5, 0, None)]


def test_esp_esn_both_and_pfs():
    assert shape(parse_esp_proposal("aes128-sha256-esn-noesn")) == [(1, 12, 128), (3, 12, None), (5, 1, None),
                                                                   (5, 0, None)]
    pfs = parse_esp_proposal("aes128gcm16-ecp256-modp2048")
    assert shape(pfs) == [(1, 20, 128), (4, 19, None), (4, 14, None), (5, 0, None)]
    assert proposal_dh_groups(pfs) == [19, 14]
    assert format_proposal(pfs) == "aes128gcm16-ecp256-modp2048"
    optional = parse_esp_proposal("aes128gcm16-ecp256-none")
    assert shape(optional) == [(1, 20, 128), (4, 19, None), (4, 0, None), (5, 0, None)]
    assert proposal_dh_groups(optional) == [19]


def test_esp_drops_prf_and_ike_drops_dh_none():
    assert shape(parse_esp_proposal("aes128-sha256-prfsha256")) == [(1, 12, 128), (3, 12, None), (5, 0, None)]
    assert shape(parse_ike_proposal("aes128-sha256-none-modp2048")) == [(1, 12, 128), (2, 5, None), (3, 12, None),
                                                                        (4, 14, None)]


def test_ah_proposals():
    assert shape(parse_ah_proposal("sha256")) == [(3, 12, None), (5, 0, None)]
    gmac = parse_ah_proposal("aes128gmac-sha256-esn")
    assert shape(gmac) == [(3, 9, None), (3, 12, None), (5, 1, None)]
    assert format_proposal(gmac) == "aes128gmac-sha256-esn"
    assert parse_ah_proposal(format_proposal(gmac)) == gmac
    assert gmac.protocol_id == 2
    with pytest.raises(ProposalError, match="integrity algorithm is mandatory in AH"):
        parse_ah_proposal("aes128")


def test_list_forms_number_proposals():
    proposals = parse_ike_proposals("aes128gcm16-prfsha256-x25519, aes128-sha256-modp2048")
    assert [x.number for x in proposals] == [1, 2]
    assert shape(proposals[1]) == IKE_CASES[3][1]
    assert format_proposals(proposals) == "aes128gcm16-prfsha256-x25519, aes128-sha256-modp2048"
    esp = parse_esp_proposals(["aes128gcm16", "aes128-sha256,null-sha256"])
    assert [x.number for x in esp] == [1, 2, 3]
    assert [x.protocol_id for x in esp] == [3, 3, 3]


def test_default_expands_like_strongswan():
    ike = parse_ike_proposals("default")
    assert len(ike) == 2
    assert shape(ike[0])[0] == (1, 12, 128) and shape(ike[1])[0] == (1, 20, 128)
    esp = parse_esp_proposals("aes256-sha512, default")
    assert [x.number for x in esp] == [1, 2, 3]
    assert shape(esp[1])[0] == (1, 20, 128) and shape(esp[2])[0] == (1, 12, 128)
    assert len(parse_ah_proposals("default")) == 1
    with pytest.raises(ProposalError, match="parse_proposals"):
        parse_ike_proposal("default")


def test_unknown_token_error_names_token_and_lists_keywords():
    with pytest.raises(ProposalError) as info:
        parse_ike_proposal("aes128-sha257-modp2048")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.token == "sha257"
    text = str(err)
    assert "'sha257'" in text and "IKE proposal 'aes128-sha257-modp2048'" in text
    for group in ("encryption:", "integrity:", "PRF:", "key exchange (DH):", "ESN:"):
        assert group in text
    for keyword in ("aes128gcm16", "sha256", "prfsha256", "x25519", "noesn"):
        assert f" {keyword}" in text
    assert "did you mean" in text


def test_uppercase_keyword_gets_a_hint():
    with pytest.raises(ProposalError, match="lowercase, write 'aes128'"):
        parse_esp_proposal("AES128-sha256")


@pytest.mark.parametrize("parse, text, message", [
    (parse_ike_proposal, "", "empty IKE proposal"),
    (parse_esp_proposal, "   ", "empty ESP proposal"),
    (parse_ike_proposal, "sha256-prfsha256-x25519", "encryption algorithm is mandatory"),
    (parse_esp_proposal, "sha256", "encryption algorithm is mandatory"),
    (parse_ike_proposal, "aes128-x25519", "needs an integrity algorithm"),
    (parse_esp_proposal, "aes128", "needs an integrity algorithm"),
    (parse_ike_proposal, "aes128gcm16-x25519", "AEAD IKE proposal needs an explicit PRF"),
    (parse_ike_proposal, "aes128gcm16-aes128-sha256-x25519", "can't be in the same proposal"),
    (parse_esp_proposal, "aes128gcm16-aes128-sha256", "can't be in the same proposal"),
    (parse_ike_proposal, "aes128-sha256", "DH group"),
    (parse_ike_proposal, "aes128-sha256_96-x25519", "no PRF can be derived"),
    (parse_ike_proposal, "aes128-sha256-x25519-esn", "only apply to ESP and AH"),
    (parse_esp_proposal, "aes128--sha256", "empty algorithm keyword"),
])
def test_invalid_proposals_have_clear_messages(parse, text, message):
    with pytest.raises(ProposalError, match=message):
        parse(text)


@pytest.mark.parametrize("text, message", [
    ("", "empty IKE proposal list"),
    (" , ", "empty IKE proposal list"),
    ("aes128-sha256-x25519,,aes256-sha384-x25519", "proposal 2 .* is empty"),
])
def test_invalid_lists(text, message):
    with pytest.raises(ProposalError, match=message):
        parse_ike_proposals(text)


def test_sa_payload_round_trip():
    proposals = parse_ike_proposals("aes128gcm16-prfsha256-x25519, aes256-sha384-ecp384, "
                                    "chacha20poly1305-prfsha256-x25519, aes128-sha256-modp2048")
    body = p.SA(proposals=proposals).body()
    back = p.SA.parse_body(body, 0).proposals
    assert back == proposals
    assert format_proposals(back) == format_proposals(proposals)
    esp = [p.Proposal(x.number, x.protocol_id, b"\xc0\x01\xca\xfe", x.transforms)
           for x in parse_esp_proposals("aes128gcm16, aes128-sha256, aes256gcm16-esn, null-sha256")]
    assert p.SA.parse_body(p.SA(proposals=esp).body(), 0).proposals == esp


def test_wire_bytes_of_one_esp_proposal():
    # RFC 7296 §3.3.1, §3.3.2, §3.3.5 layouts, ids from the IANA registry
    proposal = parse_esp_proposal("aes128gcm16")
    proposal.spi = bytes.fromhex("01020304")
    expected = bytes.fromhex(
        "00 00 0020 01 03 04 02 01020304"
        "03 00 000c 01 00 0014 800e 0080"
        "00 00 0008 05 00 0000".replace(" ", ""))
    assert proposal.serialize(last=True) == expected


# ---------------------------------------------------------------- negotiation


def with_spi(proposals: list[p.Proposal], spi: bytes) -> list[p.Proposal]:
    return [p.Proposal(x.number, x.protocol_id, spi, x.transforms) for x in proposals]


def test_responder_preference_wins():
    local = parse_ike_proposals("aes256gcm16-prfsha384-ecp384, aes128-sha256-modp2048")
    remote = with_spi(parse_ike_proposals("aes128-sha256-modp2048, aes256gcm16-prfsha384-ecp384"),
                      bytes(range(8)))
    chosen = select_proposal(local, remote)
    assert chosen.number == 2 and chosen.spi == bytes(range(8)) and chosen.protocol_id == 1
    assert shape(chosen) == [(1, 20, 256), (2, 6, None), (4, 20, None)]
    chosen = select_proposal(local, remote, prefer_local=False)
    assert chosen.number == 1 and chosen.spi == bytes(range(8))
    assert shape(chosen) == [(1, 12, 128), (2, 5, None), (3, 12, None), (4, 14, None)]


def test_within_a_type_the_preferred_side_order_wins():
    local = parse_ike_proposals("aes256-aes128-sha384-sha256-ecp384-modp2048")
    remote = parse_ike_proposals("aes128-aes256-sha256-sha384-modp2048-ecp384")
    assert shape(select_proposal(local, remote)) == [(1, 12, 256), (2, 6, None), (3, 13, None), (4, 20, None)]
    assert shape(select_proposal(local, remote, prefer_local=False)) == [
        (1, 12, 128), (2, 5, None), (3, 12, None), (4, 14, None)]


def test_one_transform_per_type_and_view():
    local = parse_esp_proposals("aes256gcm16-aes128gcm16-esn-noesn-ecp256-modp2048")
    remote = with_spi(parse_esp_proposals("aes128gcm16-aes256gcm16-noesn-esn-modp2048-ecp256"), b"\xaa\xbb\xcc\xdd")
    chosen = select_proposal(local, remote)
    assert shape(chosen) == [(1, 20, 256), (4, 19, None), (5, 1, None)]
    view = ChosenAlgorithms.from_proposal(chosen)
    assert (view.protocol, view.number, view.spi) == (3, 1, b"\xaa\xbb\xcc\xdd")
    assert (view.encr, view.encr_key_length, view.prf, view.integ, view.dh, view.esn) == (20, 256, None, None, 19, True)
    assert view.aead and str(view) == "aes256gcm16-ecp256-esn"
    with pytest.raises(ProposalError, match="more than one"):
        ChosenAlgorithms.from_proposal(local[0])


def test_view_of_classic_ike():
    chosen = select_proposal(parse_ike_proposals("aes128-sha256-modp2048"), parse_ike_proposals("aes128-sha256-modp2048"))
    view = ChosenAlgorithms.from_proposal(chosen)
    assert (view.encr, view.encr_key_length, view.prf, view.integ, view.dh, view.esn, view.aead) == \
        (12, 128, 5, 12, 14, False, False)


def test_no_common_proposal():
    local = parse_ike_proposals("aes256gcm16-prfsha384-ecp384")
    assert select_proposal(local, parse_ike_proposals("aes128-sha256-modp2048")) is None
    assert select_proposal(local, parse_ike_proposals("aes128gcm16-prfsha384-ecp384")) is None
    assert select_proposal(local, parse_ike_proposals("aes256gcm16-prfsha256-ecp384")) is None
    assert select_proposal(local, []) is None
    # same algorithms, other protocol
    assert select_proposal(parse_esp_proposals("aes128-sha256"), parse_ah_proposals("sha256")) is None


def test_key_length_must_match():
    assert select_proposal(parse_esp_proposals("aes128-sha256"), parse_esp_proposals("aes256-sha256")) is None


def test_esn_mismatch():
    assert select_proposal(parse_esp_proposals("aes128gcm16-esn"), parse_esp_proposals("aes128gcm16")) is None
    assert select_proposal(parse_esp_proposals("aes128gcm16"), parse_esp_proposals("aes128gcm16-esn")) is None
    both = select_proposal(parse_esp_proposals("aes128gcm16-esn-noesn"), parse_esp_proposals("aes128gcm16-noesn-esn"))
    assert shape(both)[-1] == (5, 1, None)
    no_esn_transform = [p.Proposal(1, 3, b"", [p.Transform(1, 20, [p.TransformAttribute(14, 128)])])]
    assert select_proposal(parse_esp_proposals("aes128gcm16"), no_esn_transform) is None


def test_dh_mismatch_and_pfs():
    pfs = parse_esp_proposals("aes128gcm16-modp2048")
    plain = parse_esp_proposals("aes128gcm16")
    assert select_proposal(pfs, plain) is None
    assert select_proposal(plain, pfs) is None
    assert select_proposal(pfs, parse_esp_proposals("aes128gcm16-ecp256")) is None
    # NONE among the groups makes PFS optional (strongSwan proposal.c select_algo)
    assert shape(select_proposal(plain, parse_esp_proposals("aes128gcm16-modp2048-none"))) == [(1, 20, 128), (5, 0, None)]
    assert shape(select_proposal(parse_esp_proposals("aes128gcm16-modp2048-none"), plain)) == [(1, 20, 128), (5, 0, None)]
    # the CHILD_SA of IKE_AUTH has no KE: DH transforms are ignored
    assert shape(select_proposal(pfs, plain, skip_dh=True)) == [(1, 20, 128), (5, 0, None)]
    # IKE: DH is mandatory on both sides
    assert select_proposal(parse_ike_proposals("aes128-sha256-modp2048"), parse_ike_proposals("aes128-sha256-ecp256")) is None


def test_aead_and_classic_proposals_do_not_mix_in_selection():
    local = parse_esp_proposals("aes128gcm16")
    assert select_proposal(local, parse_esp_proposals("aes128-sha256")) is None
    # a peer sending INTEG NONE (id 0) with an AEAD cipher still matches (RFC 7296 §3.3)
    remote = [p.Proposal(1, 3, b"\x00\x00\x00\x01", [p.Transform(1, 20, [p.TransformAttribute(14, 128)]),
                                                     p.Transform(3, 0), p.Transform(5, 0)])]
    assert shape(select_proposal(local, remote)) == [(1, 20, 128), (5, 0, None)]


def test_unknown_transform_type_makes_proposal_unacceptable():
    # RFC 7296 §3.3.6: a proposal with a transform type the responder does not understand is skipped
    remote = parse_esp_proposals("aes128gcm16")
    remote[0].transforms.append(p.Transform(13, 1))
    assert select_proposal(parse_esp_proposals("aes128gcm16"), remote) is None


def test_private_algorithms_can_be_skipped():
    local = parse_esp_proposals("aes128-sha256_96-sha256")
    remote = parse_esp_proposals("aes128-sha256_96-sha256")
    assert shape(select_proposal(local, remote))[1] == (3, 1026, None)
    assert shape(select_proposal(local, remote, skip_private=True))[1] == (3, 12, None)


def test_selection_survives_the_wire():
    local = parse_ike_proposals("aes256gcm16-prfsha384-ecp384, aes128-sha256-modp2048")
    remote = p.SA.parse_body(p.SA(proposals=parse_ike_proposals("aes128-sha256-modp2048")).body(), 0).proposals
    chosen = select_proposal(local, remote)
    assert format_proposal(chosen) == "aes128-sha256-modp2048"
    assert p.SA.parse_body(p.SA(proposals=[chosen]).body(), 0).proposals == [chosen]


# ---------------------------------------------------------------- DH group / INVALID_KE_PAYLOAD


def test_initiator_group_and_invalid_ke():
    initiator = parse_ike_proposals("aes128gcm16-prfsha256-x25519-ecp256-modp2048")
    assert initiator_dh_group(initiator) == 31
    responder = parse_ike_proposals("aes128gcm16-prfsha256-ecp256-modp2048")
    assert responder_dh_group(responder, initiator, 31) == 19
    assert responder_dh_group(responder, initiator, 19) is None
    assert responder_dh_group(responder, initiator, None) == 19
    assert responder_dh_group(responder, parse_ike_proposals("aes256-sha256-ecp256"), 19) is None
    retry = promote_dh_group(initiator, 19)
    assert initiator_dh_group(retry) == 19
    assert proposal_dh_groups(retry[0]) == [19, 31, 14]
    assert responder_dh_group(responder, retry, 19) is None
    assert proposal_dh_groups(initiator[0]) == [31, 19, 14]


def test_promote_moves_proposals_without_the_group_back():
    proposals = parse_ike_proposals("aes128-sha256-modp2048, aes128gcm16-prfsha256-x25519-ecp256")
    retry = promote_dh_group(proposals, 19)
    assert [x.number for x in retry] == [1, 2]
    assert format_proposals(retry) == "aes128gcm16-prfsha256-ecp256-x25519, aes128-sha256-modp2048"
    assert format_proposals(proposals) == "aes128-sha256-modp2048, aes128gcm16-prfsha256-x25519-ecp256"


def test_child_sa_dh():
    assert initiator_dh_group(parse_esp_proposals("aes128gcm16")) is None
    assert initiator_dh_group(parse_esp_proposals("aes128gcm16-none-modp2048")) is None
    selected = select_proposal(parse_esp_proposals("aes128gcm16"), parse_esp_proposals("aes128gcm16-modp2048-none"))
    assert invalid_ke_group(selected, 14) is None


# ---------------------------------------------------------------- properties

KW = known_keywords()
AEAD_ENCR = [k for k in KW["encryption"] if any(m in k for m in ("gcm", "ccm", "chacha", "gmac"))]
CLASSIC_ENCR = [k for k in KW["encryption"] if k not in AEAD_ENCR]
DERIVABLE_INTEG = [k for k in KW["integrity"] if not k.endswith("256_96")]
DH = [k for k in KW["key exchange (DH)"] if k not in ("none", "modpnone")]


def pick(choices, lo, hi):
    return st.lists(st.sampled_from(choices), min_size=lo, max_size=hi)


@st.composite
def ike_strings(draw):
    if draw(st.booleans()):
        tokens = draw(pick(AEAD_ENCR, 1, 3)) + draw(pick(KW["PRF"], 1, 3))
    else:
        tokens = draw(pick(CLASSIC_ENCR, 1, 3)) + draw(pick(DERIVABLE_INTEG, 1, 3)) + draw(pick(KW["PRF"], 0, 2))
    tokens += draw(pick(DH, 1, 3))
    return "-".join(draw(st.permutations(tokens)))


@st.composite
def esp_strings(draw):
    if draw(st.booleans()):
        tokens = draw(pick(AEAD_ENCR, 1, 3))
    else:
        tokens = draw(pick(CLASSIC_ENCR, 1, 3)) + draw(pick(KW["integrity"], 1, 3))
    tokens += draw(pick(KW["key exchange (DH)"], 0, 2)) + draw(pick(KW["ESN"], 0, 2))
    return "-".join(draw(st.permutations(tokens)))


@st.composite
def ah_strings(draw):
    tokens = draw(pick(list(KW["integrity"]) + ["aes128gmac", "aes256gmac"], 1, 3))
    tokens += draw(pick(KW["key exchange (DH)"], 0, 2)) + draw(pick(KW["ESN"], 0, 2))
    return "-".join(draw(st.permutations(tokens)))


@many(400)
@given(st.one_of(ike_strings().map(lambda s: (parse_ike_proposal, s)),
                 esp_strings().map(lambda s: (parse_esp_proposal, s)),
                 ah_strings().map(lambda s: (parse_ah_proposal, s))))
def test_format_of_parse_is_stable(case):
    parse, text = case
    proposal = parse(text)
    canonical = format_proposal(proposal)
    again = parse(canonical)
    assert again == proposal
    assert format_proposal(again) == canonical
    assert parse(format_proposal(proposal, explicit=True)) == proposal
    view_source = select_proposal([proposal], [again])
    assert view_source is not None
    ChosenAlgorithms.from_proposal(view_source)


ALL_TOKENS = [t for group in KW.values() for t in group]
junk = st.sampled_from(ALL_TOKENS + ["", " ", "default", "AES128", "aes129", "-", ",", "ENCR(12)", "\x00", "é"])


@many(400)
@given(st.one_of(st.text(max_size=40), st.lists(junk, max_size=8).map("-".join),
                 st.lists(st.lists(junk, max_size=5).map("-".join), max_size=3).map(",".join)))
def test_parse_is_total(text):
    for parse in (parse_ike_proposal, parse_esp_proposal, parse_ah_proposal,
                  parse_ike_proposals, parse_esp_proposals, parse_ah_proposals):
        try:
            result = parse(text)
        except ProposalError as err:
            assert str(err)
            continue
        for proposal in result if isinstance(result, list) else [result]:
            assert isinstance(proposal, p.Proposal)
            assert parse_proposal_again(proposal) == proposal


def parse_proposal_again(proposal: p.Proposal) -> p.Proposal:
    parse = {1: parse_ike_proposal, 2: parse_ah_proposal, 3: parse_esp_proposal}[int(proposal.protocol_id)]
    return parse(format_proposal(proposal), number=proposal.number)


def test_keyword_groups_are_complete():
    assert {"aes128", "aes", "aes128gcm16", "aes128gcm", "aes128gcm128", "aes256ccm", "aes192ctr", "chacha20poly1305",
            "3des", "camellia256", "null"} <= set(KW["encryption"])
    assert {"sha1", "sha", "sha256", "sha2_256", "sha384", "sha512", "md5", "aesxcbc", "aescmac",
            "sha256_96"} <= set(KW["integrity"])
    assert set(KW["PRF"]) == {"prfsha1", "prfsha256", "prfsha384", "prfsha512", "prfmd5", "prfaesxcbc",
                              "prfaescmac"}
    assert set(KW["ESN"]) == {"esn", "noesn"}


def test_proposal_number_fits_one_octet():
    assert parse_esp_proposal("aes128gcm16", number=255).number == 255
    for number in (0, 256):
        with pytest.raises(ProposalError, match="outside 1..255"):
            parse_esp_proposal("aes128gcm16", number=number)
