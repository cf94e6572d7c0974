"""Trace records as one line each, in the spirit of strongSwan's log."""
from __future__ import annotations

from typing import Any


def narrate(record: dict[str, Any]) -> str | None:
    kind = record.get("kind")
    sa = f"#{record['ike_sa']}" if record.get("ike_sa") is not None else "#-"
    if kind == "message":
        verb = "sending" if record["dir"] == "out" else "received"
        arrow = "->" if record["dir"] == "out" else "<-"
        peer = record["dst"] if record["dir"] == "out" else record["src"]
        what = "response" if record["response"] else "request"
        frag = f" in {record['fragments']} fragments" if record.get("fragments", 1) > 1 else ""
        chain = " ".join(record["payloads"])
        if record.get("encrypted"):
            chain = f"SK{{ {chain} }}" if chain else "SK{ }"
        return (f"[IKE] {sa} {verb} {record['exchange']} {what} {record['message_id']} [ {chain} ] "
                f"{arrow} {peer}{frag}")
    if kind == "event":
        name = record["event"]
        if name == "IkeSaUp":
            nat = []
            if record.get("local_behind_nat"):
                nat.append("local host is behind NAT")
            if record.get("remote_behind_nat"):
                nat.append("remote host is behind NAT")
            return (f"[IKE] {sa} IKE_SA {record['name']} established between {record['local'][0]}[{record['local_id']}]"
                    f"...{record['remote'][0]}[{record['remote_id']}] ({record['algorithms']})"
                    + (f", {', '.join(nat)}" if nat else ""))
        if name == "ChildSaUp":
            return (f"[CHD] {sa} CHILD_SA {record['name']} established with SPIs {record['spi_in']}_i "
                    f"{record['spi_out']}_o ({record['algorithms']}, {record['mode']}"
                    f"{', UDP-encapsulated' if record.get('encap') else ''}) and TS "
                    f"{' '.join(record['local_ts'])} === {' '.join(record['remote_ts'])}")
        if name == "ChildSaDeleted":
            return f"[CHD] {sa} CHILD_SA {record['name']} {record['spi_in']}_i deleted: {record['reason']}"
        if name == "ChildSaRekeyed":
            return (f"[CHD] {sa} CHILD_SA {record['name']} rekeyed: {record['old_spi_in']}_i -> "
                    f"{record['new_spi_in']}_i")
        if name == "IkeSaDeleted":
            return f"[IKE] {sa} IKE_SA {record['name']} deleted: {record['reason']}"
        if name == "IkeSaRekeyed":
            return f"[IKE] {sa} IKE_SA rekeyed into #{record['new_ike_sa']}"
        if name == "AuthFailed":
            side = "peer rejected our authentication" if record["by_peer"] else "authentication of the peer failed"
            return f"[IKE] {sa} {side}: {record['reason']}"
        if name == "NegotiationFailed":
            return f"[IKE] {sa} {record['exchange']} failed: {record['reason']}"
        if name == "AddressesUpdated":
            return (f"[IKE] {sa} MOBIKE: IPsec SAs moved to {record['local'][0]}:{record['local'][1]} - "
                    f"{record['remote'][0]}:{record['remote'][1]}{', UDP-encapsulated' if record.get('encap') else ''}"
                    f" ({record.get('reason')})")
        if name == "PeerUnreachable":
            return f"[IKE] {sa} giving up after {record['tries']} tries of {record['exchange']}: peer unreachable"
        return None
    if kind == "retransmit":
        return f"[IKE] {sa} retransmit {record['tries']} of {record['exchange']} request {record['message_id']}"
    if kind == "drop":
        return f"[NET] {sa} dropped: {record['reason']}"
    if kind == "note" and record.get("what") in ("nat_detection", "invalid_ke", "rekey_collision",
                                                  "ike_rekey_collision", "peer_address_changed",
                                                  "local_address_changed", "mobike_update", "update_sa_addresses",
                                                  "return_routability_check", "return_routability_ok",
                                                  "nat_mapping_changed", "reauthenticate", "no_path",
                                                  "peer_addresses", "cookie2_mismatch",
                                                  "mobike_unacceptable_addresses"):
        details = ", ".join(f"{k}={v}" for k, v in record.items() if k not in ("t", "kind", "ike_sa", "what"))
        return f"[IKE] {sa} {record['what'].replace('_', ' ')}: {details}"
    return None
