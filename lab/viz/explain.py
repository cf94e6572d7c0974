"""Every payload of an IKE message in words, for notebooks and for `--explain`-style output:
proposals as strongSwan writes them, key exchange groups, nonces, notifies, identities,
traffic selectors; the SK payload opened when the keys are known."""
from __future__ import annotations

from lab.ike import payloads as pl
from lab.ike.const import AuthMethod, DhGroup, ExchangeType, ProtocolId, name_of
from lab.ike.errors import CryptoError, IntegrityError, ParseError
from lab.ike.message import Message, classify_udp
from lab.ike.payloads import chain_names
from lab.ike.proposals import ChosenAlgorithms
from lab.ike.protect import decrypt

from .keys import KeyTables


def _hex(data: bytes, n: int = 8) -> str:
    return data[:n].hex() + ("..." if len(data) > n else "")


def describe_payload(payload: pl.Payload, name: str) -> str:
    """One line on one payload: its name and what it carries."""
    if isinstance(payload, pl.SA):
        parts = []
        for proposal in payload.proposals:
            try:
                algorithms = str(ChosenAlgorithms.from_proposal(proposal))
            except ValueError:
                algorithms = f"{len(proposal.transforms)} transforms"
            spi = f", SPI {proposal.spi.hex()}" if proposal.spi else ""
            parts.append(f"#{proposal.number} {name_of(ProtocolId, proposal.protocol_id)} {algorithms}{spi}")
        return f"{name}: " + "; ".join(parts)
    if isinstance(payload, pl.KE):
        return f"{name}: group {name_of(DhGroup, payload.dh_group)}, public value of {len(payload.data)} octets " \
               f"({_hex(payload.data)})"
    if isinstance(payload, pl.Nonce):
        return f"{name}: {len(payload.data)} random octets ({_hex(payload.data)})"
    if isinstance(payload, pl.Notify):
        data = f", {len(payload.data)} octets ({_hex(payload.data)})" if payload.data else ""
        spi = f", SPI {payload.spi.hex()}" if payload.spi else ""
        return f"{name}{spi}{data}".replace(", ", ": ", 1) if (spi or data) else name
    if isinstance(payload, pl.Identification):
        return f"{name}: {payload.describe()}"
    if isinstance(payload, pl.AUTH):
        return f"{name}: {name_of(AuthMethod, payload.method)}, {len(payload.data)} octets ({_hex(payload.data)})"
    if isinstance(payload, pl.TrafficSelectors):
        return f"{name}: " + ", ".join(str(s) for s in payload.selectors)
    if isinstance(payload, pl.Delete):
        spis = ", ".join(s.hex() for s in payload.spis) or "the IKE SA itself"
        return f"{name}: {name_of(ProtocolId, payload.protocol_id)} {spis}"
    if isinstance(payload, pl.SKF):
        return f"{name}: fragment {payload.fragment_number} of {payload.total_fragments}, {len(payload.data)} " \
               f"octets of IV, ciphertext and ICV"
    if isinstance(payload, pl.SK):
        return f"{name}: {len(payload.data)} octets of IV, ciphertext and ICV"
    octets = getattr(payload, "data", b"")
    return f"{name}: {len(octets)} octets" if isinstance(octets, bytes) else name


def describe_message(udp_payload: bytes, port: int = 500, keys: KeyTables | None = None) -> str:
    """A message as it travels (non-ESP marker included on port 4500): header, every
    payload, and inside SK when `keys` has this IKE SA."""
    kind, data = classify_udp(4500 if port == 4500 else 500, udp_payload)
    if kind.value != "ike":
        return f"not IKE: {kind.value}"
    try:
        message = Message.parse(data)
    except ParseError as err:
        return f"not a valid IKE message: {err}"
    role = "original initiator" if message.is_initiator else "original responder"
    lines = [f"{name_of(ExchangeType, message.exchange)} {'response' if message.is_response else 'request'} "
             f"{message.message_id}, from the {role}, SPIi {message.spi_i.hex()} SPIr {message.spi_r.hex()}, "
             f"{len(data)} octets" + (" behind the non-ESP marker (UDP 4500)" if port == 4500 else "")]
    in_request = not message.is_response
    for payload, name in zip(message.payloads, chain_names(message.payloads, in_request)):
        lines.append("  " + describe_payload(payload, name))
    sk = message.encrypted
    if isinstance(sk, pl.SK) and keys is not None:
        generations = keys.ike_sa_generations(message.spi_i, message.spi_r)
        if not generations:
            lines.append("    (no keys for this IKE SA)")
        else:
            # RFC 9370 §2.2.2: with IKE_INTERMEDIATE key exchanges, the keys in force are those the ICV verifies under
            error: Exception | None = None
            for number in reversed(range(len(generations))):
                sa = generations[number]
                try:
                    inner = decrypt(data, message, sa.cipher(), sa.direction(message.is_initiator))
                except (IntegrityError, CryptoError, ParseError) as err:
                    error = error or err
                    continue
                key = "SK_ei/SK_ai" if message.is_initiator else "SK_er/SK_ar"
                if len(generations) > 1:
                    key += " of IKE_SA_INIT" if number == 0 else f" after additional key exchange {number}"
                lines.append(f"    decrypted with {key}, the ICV verified:")
                for payload, name in zip(inner, chain_names(inner, in_request)):
                    lines.append("    " + describe_payload(payload, name))
                break
            else:
                lines.append(f"    (not decrypted: {error})")
    return "\n".join(lines)


__all__ = ["describe_message", "describe_payload"]
