"""The certificate revocation lists of swanctl.conf's authorities, fetched when the daemon starts.

charon fetches a CA's CRL from the `crl_uris` of its authority section when it checks a
certificate that CA issued (revocation plugin, through its curl or files fetchers). ipsec-lab
fetches them once, when the daemon starts (a reload is a restart): file:// is read, http:// and
https:// are fetched directly, never through a proxy of the environment, with a short timeout;
the first URI of an authority that gives a CRL signed by the authority's CA is used, as charon
tries an authority's URIs in turn. A URI that fails, or gives something that is not that CA's
CRL, is logged and skipped: the CA's certificates are then accepted without a CRL, which is
strongSwan's default (revocation = relaxed). ldap:// is logged as not fetched.
"""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509

from lab.ike.certs import crl_signed_by

MAX_CRL = 16 * 1024 * 1024  # octets: a CRL larger than this is not read


def fetch(uri: str, timeout: float) -> bytes:
    """The octets behind a file://, http:// or https:// URI (OSError or ValueError if not)."""
    parts = urllib.parse.urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        with open(urllib.parse.unquote(parts.path), "rb") as handle:
            return handle.read(MAX_CRL + 1)
    if scheme not in ("http", "https"):
        raise ValueError(f"ipsec-lab fetches CRLs from file://, http:// and https:// only, not {scheme}://")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the lab's own network only
    with opener.open(uri, timeout=timeout) as answer:
        return answer.read(MAX_CRL + 1)


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    if len(data) > MAX_CRL:
        raise ValueError(f"larger than {MAX_CRL // (1024 * 1024)} MiB")
    return x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)


def fetch_authority_crls(authorities: Sequence[Any], say: Callable[[str], None],
                         timeout: float = 3.0) -> list[x509.CertificateRevocationList]:
    """One CRL per authority that has crl_uris and where one of them gives its CA's CRL."""
    crls = []
    for authority in authorities:
        ca = authority.cacert.subject.rfc4514_string()
        for uri in authority.crl_uris:
            try:
                crl = parse_crl(fetch(uri, timeout))
            except urllib.error.URLError as exc:
                say(f"authority {authority.name}: fetching the CRL from {uri} failed: {exc.reason}")
                continue
            except OSError as exc:
                say(f"authority {authority.name}: fetching the CRL from {uri} failed: {exc.strerror or exc}")
                continue
            except ValueError as exc:
                say(f"authority {authority.name}: {uri} gave no CRL ({exc})")
                continue
            if not crl_signed_by(crl, authority.cacert):
                say(f"authority {authority.name}: the CRL from {uri} is not signed by '{ca}': not used")
                continue
            crls.append(crl)
            update = crl.next_update_utc
            say(f"authority {authority.name}: CRL of '{ca}' from {uri}: {len(crl)} revoked certificate(s)"
                + (f", next update {update:%Y-%m-%d %H:%M} UTC" if update else ""))
            break
        else:
            if authority.crl_uris:
                say(f"authority {authority.name}: no CRL for '{ca}': its certificates are accepted without one "
                    f"(revocation = relaxed, strongSwan's default)")
        if authority.ocsp_uris:
            say(f"authority {authority.name}: ocsp_uris are not asked: ipsec-lab checks revocation with CRLs only")
    return crls
