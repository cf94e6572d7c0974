"""The IKE SA (RFC 7296): its SPIs, keys, identities, NAT state and CHILD SAs, lifetimes,
and the rekey collision rules (§2.8.1, §2.8.2). The exchanges are tasks (lab.ike.tasks), run
by its task manager (lab.ike.task_manager), which owns the queue, message IDs and
retransmissions. What the SA holds of NAT detection and MOBIKE is state; the rules that set
it are beside the tasks (lab.ike.tasks.ike_natd, lab.ike.tasks.ike_mobike), and so are the
authenticators (lab.ike.authenticators).

Sans-I/O: an `IkeSA` never touches a socket or a clock. It sees the endpoint that holds it
through a small interface (lab.ike.interface.Endpoint).
"""
from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import payloads as pl
from .child_sa import ChildSA, IpsecPath, covers, narrow, parsed
from .config import ChildConfig, ChildMode, DynamicTrafficSelector, IkeConfig, selector_address, transport_nat_selectors
from .const import NotifyType, ProtocolId, TransformType, name_of
from .crypto import IkeSaKeys, SkCipher, derive_child_sa_keys, derive_ike_sa_keys, derive_rekeyed_ike_sa_keys
from .crypto.dh import KeyExchange
from .crypto.prf import get_prf
from .errors import CryptoError, ExchangeFailed
from .events import ChildKeys, ChildSaDeleted, ChildSaRekeyed, ChildSaUp, IkeSaDeleted, IkeSaRekeyed, IkeSaUp
from .identity import Identity
from .message import Message
from .proposals import ChosenAlgorithms, ProposalError, select_proposal
from .protect import DirectionKeys
from .states import ChildState, IkeState
from .task_manager import TaskManager
from .tasks import ChildCreate, ChildDelete, Dpd, IkeDelete, IkeRekey, Task, find_notify, first

if TYPE_CHECKING:
    from .interface import Endpoint

Address = tuple[str, int]

__all__ = ["ChildSA", "ChildState", "ExchangeFailed", "IkeSA", "IkeState", "Task", "narrow"]


def _prf_and_encr(chosen: ChosenAlgorithms) -> tuple[int, int]:
    """The PRF and encryption algorithm of an IKE proposal, which needs both (RFC 7296 §3.3.3)."""
    if chosen.encr is None or chosen.prf is None:
        raise ExchangeFailed("chosen IKE proposal lacks encryption or PRF")
    return chosen.prf, chosen.encr


class IkeSA:
    """One IKE SA, initiator or responder of it (`is_initiator`: the original initiator, RFC
    7296 §2.2; after an IKE rekey, the initiator of the rekeying exchange)."""

    def __init__(self, endpoint: Endpoint, unique_id: int, config: IkeConfig, is_initiator: bool,
                 local: Address, remote: Address, spi_i: bytes, spi_r: bytes, now: float) -> None:
        self.endpoint = endpoint
        self.unique_id = unique_id
        self.config = config
        self.is_initiator = is_initiator
        self.local = local
        self.remote = remote
        self.spi_i = spi_i
        self.spi_r = spi_r
        self.created = now
        self.state = IkeState.CONNECTING
        self.algorithms: ChosenAlgorithms | None = None
        self.cipher: SkCipher | None = None
        self.keys: IkeSaKeys | None = None
        self.kex: KeyExchange | None = None
        self.nonce_i = b""
        self.nonce_r = b""
        self.proposals_to_offer = list(config.proposals)
        self.init_request = b""   # RealMessage1 (RFC 7296 §2.15)
        self.init_response = b""  # RealMessage2
        self.local_id = config.local_identity(local[0])
        self.remote_id: Identity | None = None
        self.local_behind_nat = False
        self.remote_behind_nat = False
        self.peer_fragmentation = False
        self.peer_hashes: list[int] = []
        self.peer_certreq = False
        self.peer_multiple_auth = False  # RFC 4739 §3: MULTIPLE_AUTH_SUPPORTED in IKE_SA_INIT
        self.auth_responder: Task | None = None  # the responder's IKE_AUTH across its round trips
        self.remote_eap_id: Identity | None = None
        self.local_eap_id: Identity | None = None
        self.virtual_ips: list[str] = []   # the peer gave us (RFC 7296 §3.15.1): IPv4, IPv6 or both
        self.assigned_ips: list[str] = []  # we gave the peer
        self.radius_framed_ip: str | None = None  # the virtual IP an Access-Accept named (RFC 2865 §5.8)
        self.radius_classes: list[bytes] = []     # its Class values (RFC 2865 §5.25), for accounting
        self.radius_server: str | None = None     # the server that accepted the peer (auth = eap-radius)
        self.children: list[ChildSA] = []
        self.tm = TaskManager(self)
        self.last_heard = now
        self.rekey_at: float | None = None
        self.expire_at: float | None = None
        self.rekeying_ike: IkeRekey | None = None
        # RFC 7296 §2.8.2: a completed rekey in a collision waits for the other exchange
        self.ike_rekeys_done: list[tuple[IkeSA, tuple[bytes, bytes], bool]] = []
        # RFC 7296 §2.8.1: completed rekeys of a CHILD_SA (by its spi_in), for collisions
        self.child_rekeys_done: dict[bytes, list[tuple[ChildSA, bool]]] = {}
        self.destroy_at: float | None = None
        # MOBIKE (RFC 4555): the party that initiated the IKE SA decides its addresses (§2.1),
        # also after an IKE rekey whoever started that
        self.original_initiator = is_initiator
        self.mobike = False        # both announced MOBIKE_SUPPORTED (§3.2)
        self.peer_mobike = False
        self.peer_addresses: list[str] = []   # the peer's address set (§3.4, §3.6)
        self.natd_destination: bytes | None = None  # last NAT_DETECTION_DESTINATION_IP seen (§3.8)
        self.address_generation = 0  # one more at every change of our addresses or the peer's (§3.5)
        self.ipsec_path = IpsecPath(local, remote, False)  # where the IPsec SAs run
        # RFC 9242 / RFC 9370: IKE_INTERMEDIATE exchanges between IKE_SA_INIT and IKE_AUTH
        self.peer_intermediate = False   # the peer sent INTERMEDIATE_EXCHANGE_SUPPORTED (RFC 9242 §3.1)
        self.additional_pending: list[tuple[int, int]] = []  # (transform type, method) not yet run
        self.intermediate_count = 0      # IKE_INTERMEDIATE exchanges completed
        self.key_generation = 0          # key sets since IKE_SA_INIT (RFC 9370 §2.2.2: one more per exchange)
        self.next_keys: IkeSaKeys | None = None  # responder: the keys that apply from the next request on
        self.int_auth_i = b""            # RFC 9242 §3.3.2: IntAuth_iN and IntAuth_rN so far
        self.int_auth_r = b""
        # RFC 9370 §2.2.4: responder side of rekeys waiting for IKE_FOLLOWUP_KE, by link data
        self.followups: dict[bytes, Task] = {}

    @property
    def prf_id(self) -> int:
        """The PRF of this IKE SA (RFC 7296 §2.13), once IKE_SA_INIT has chosen the algorithms."""
        assert self.algorithms is not None, "the IKE SA's PRF is used before IKE_SA_INIT chose it"
        return _prf_and_encr(self.algorithms)[0]

    @property
    def mid_in(self) -> int:
        return self.tm.mid_in

    def queue(self, task: Task, now: float, front: bool = False) -> None:
        self.tm.queue(task, now, front)

    def receive(self, message: Message, data: bytes, src: Address, dst: Address, now: float) -> None:
        self.tm.receive(message, data, src, dst, now)

    # ------------------------------------------------------------ identity and keys

    @property
    def our_spi(self) -> bytes:
        return self.spi_i if self.is_initiator else self.spi_r

    def trace_note(self, now: float, what: str, **fields: object) -> None:
        self.endpoint.trace(now, "note", ike_sa=self.unique_id, what=what, **fields)

    def set_state(self, state: IkeState, now: float) -> None:
        if state != self.state:
            self.endpoint.trace(now, "state", ike_sa=self.unique_id, object="IKE_SA", name=self.config.name,
                                old=self.state.value, new=state.value)
            self.state = state

    def set_algorithms(self, chosen: ChosenAlgorithms, shared: bytes, keys: IkeSaKeys | None = None) -> None:
        self.algorithms = chosen
        prf_id, encr_id = _prf_and_encr(chosen)
        try:
            self.cipher = SkCipher(encr_id, chosen.encr_key_length, chosen.integ or 0)
            self.keys = keys or derive_ike_sa_keys(prf_id, encr_id, chosen.encr_key_length, chosen.integ or 0,
                                                   shared, self.nonce_i, self.nonce_r, self.spi_i, self.spi_r)
        except CryptoError as err:
            raise ExchangeFailed(str(err), NotifyType.NO_PROPOSAL_CHOSEN) from None
        self.endpoint.ike_keys_ready(self)

    def update_keys(self, shared: bytes, now: float, deferred: bool = False) -> None:
        """RFC 9370 §2.2.2: SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr) and the seven keys from it
        with Ni | Nr | SPIi | SPIr, as at an IKE SA rekey (strongSwan keymat_v2 with its own SK_d).
        `deferred` (the responder): they apply from the next request on (`apply_next_keys`)."""
        assert self.algorithms is not None and self.keys is not None
        prf_id, encr_id = _prf_and_encr(self.algorithms)
        chosen = self.algorithms
        try:
            keys = derive_rekeyed_ike_sa_keys(prf_id, self.keys.sk_d, prf_id, encr_id,
                                              chosen.encr_key_length, chosen.integ or 0, shared, self.nonce_i,
                                              self.nonce_r, self.spi_i, self.spi_r)
        except CryptoError as err:
            raise ExchangeFailed(str(err), NotifyType.NO_PROPOSAL_CHOSEN) from None
        self.next_keys = keys
        self.trace_note(now, "keys_updated", generation=self.key_generation + 1,
                        **({"applies": "from the next request"} if deferred else {}))
        if not deferred:
            self.apply_next_keys()

    def apply_next_keys(self) -> None:
        if self.next_keys is not None:
            self.keys, self.next_keys = self.next_keys, None
            self.key_generation += 1
            self.endpoint.ike_keys_ready(self)

    def add_int_auth(self, request: bool, data: bytes) -> None:
        """RFC 9242 §3.3.2: IntAuth_iN = prf(SK_pi, IntAuth_i(N-1) | IntAuth_iN_A | IntAuth_iN_P)
        for a request (the initiator's), IntAuth_rN likewise with SK_pr for a response, under the
        keys that protect the message."""
        assert self.algorithms is not None and self.keys is not None
        prf = get_prf(self.prf_id)
        if request:
            self.int_auth_i = prf.prf(self.keys.sk_pi, self.int_auth_i + data)
        else:
            self.int_auth_r = prf.prf(self.keys.sk_pr, self.int_auth_r + data)

    def int_auth(self) -> bytes:
        """IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH_MID (RFC 9242 §3.3.2), empty without IKE_INTERMEDIATE.
        The first IKE_AUTH follows IKE_SA_INIT (message ID 0) and the IKE_INTERMEDIATE ones (1..n)."""
        if not self.intermediate_count:
            return b""
        return self.int_auth_i + self.int_auth_r + struct.pack("!I", self.intermediate_count + 1)

    @property
    def keys_out(self) -> DirectionKeys:
        k = self.keys
        assert k is not None, "IKE SA keys are used before IKE_SA_INIT derived them"
        return DirectionKeys(k.sk_ei, k.sk_ai) if self.is_initiator else DirectionKeys(k.sk_er, k.sk_ar)

    @property
    def keys_in(self) -> DirectionKeys:
        k = self.keys
        assert k is not None, "IKE SA keys are used before IKE_SA_INIT derived them"
        return DirectionKeys(k.sk_er, k.sk_ar) if self.is_initiator else DirectionKeys(k.sk_ei, k.sk_ai)

    def check_returned_proposal(self, sa: pl.SA, offered: list[pl.Proposal], protocol: int) -> ChosenAlgorithms:
        """RFC 7296 §2.7: the responder returns one proposal, one transform per type, that we offered."""
        if len(sa.proposals) != 1:
            raise ExchangeFailed(f"responder returned {len(sa.proposals)} proposals instead of one")
        returned = sa.proposals[0]
        try:
            chosen = ChosenAlgorithms.from_proposal(returned)
        except ProposalError as err:
            raise ExchangeFailed(f"responder's proposal is not a choice: {err}") from None
        mine = next((p for p in offered if p.number == returned.number), None)
        if returned.protocol_id != protocol or mine is None:
            raise ExchangeFailed("responder returned a proposal we did not offer")
        if select_proposal([mine], [pl.Proposal(returned.number, returned.protocol_id, returned.spi,
                                                 returned.transforms)]) is None:
            raise ExchangeFailed("responder's choice is not within the proposal we offered")
        return chosen

    @property
    def nat_detected(self) -> bool:
        return self.local_behind_nat or self.remote_behind_nat

    # ------------------------------------------------------------ established

    @property
    def virtual_ip(self) -> str | None:
        """The first virtual IP the peer gave us (strongSwan's PLUTO_MY_SOURCEIP), or None."""
        return self.virtual_ips[0] if self.virtual_ips else None

    @virtual_ip.setter
    def virtual_ip(self, address: str | None) -> None:
        self.virtual_ips = [address] if address else []

    @property
    def assigned_ip(self) -> str | None:
        """The first virtual IP we gave the peer, or None."""
        return self.assigned_ips[0] if self.assigned_ips else None

    @assigned_ip.setter
    def assigned_ip(self, address: str | None) -> None:
        self.assigned_ips = [address] if address else []

    def established(self, now: float) -> None:
        self.destroy_at = None
        self.set_state(IkeState.ESTABLISHED, now)
        self.schedule_ike_lifetime(now)
        assert self.algorithms is not None
        self.ipsec_path = IpsecPath(self.local, self.remote, self.nat_detected)
        self.endpoint.emit(IkeSaUp(self.unique_id, self.config.name, self.local, self.remote, self.spi_i, self.spi_r,
                                   str(self.local_id), str(self.remote_id), str(self.algorithms),
                                   self.local_behind_nat, self.remote_behind_nat, self.virtual_ip, self.mobike,
                                   tuple(self.virtual_ips)))

    def schedule_ike_lifetime(self, now: float) -> None:
        conf = self.config
        if conf.rekey_time:
            jitter = self.endpoint.random.uniform(0, conf.rand_time or 0) if self.endpoint.jitter else 0
            self.rekey_at = now + conf.rekey_time - min(jitter, conf.rekey_time)
            self.expire_at = now + conf.rekey_time + (conf.over_time or 0)

    # ------------------------------------------------------------ children

    def child_local_ts(self, child: ChildConfig) -> list[pl.TrafficSelector]:
        if self.config.vips and not self.virtual_ips:
            # virtual IPs are asked for and not known yet: offer any address of each family asked
            # for (0.0.0.0/0, ::/0), the responder narrows (RFC 7296 §3.15.3; strongSwan's child_create)
            families = sorted({ipaddress.ip_address(v).version for v in self.config.vips})
            out = []
            for ts in child.local_ts:
                if isinstance(ts, DynamicTrafficSelector):
                    for version in families:
                        any_net = ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")
                        out.append(pl.TrafficSelector(any_net.network_address, any_net.broadcast_address,
                                                      ts.ip_protocol, ts.start_port, ts.end_port))
                else:
                    out.append(ts)
            return out
        return child.local_selectors(self.virtual_ips or self.local[0])

    def child_remote_ts(self, child: ChildConfig) -> list[pl.TrafficSelector]:
        return child.remote_selectors(self.assigned_ips or self.remote[0])

    def child_proposals(self, child: ChildConfig, spi: bytes, pfs: bool) -> list[pl.Proposal]:
        out = []
        for p in child.ipsec_proposals:
            # RFC 9370 §2.2.4: additional key exchanges run only in CREATE_CHILD_SA (IKE_FOLLOWUP_KE), never in
            # IKE_AUTH. They go as configured even to a peer that did not announce IKE_INTERMEDIATE: one that does
            # not know the transform types rejects the proposal (RFC 7296 §3.3.6); leaving them out would not
            transforms = [t for t in p.transforms
                          if pfs or (t.transform_type != TransformType.DH and not 6 <= int(t.transform_type) <= 12)]
            out.append(pl.Proposal(p.number, p.protocol_id, spi, transforms))
        return out

    def _child_lifetimes(self, config: ChildConfig, now: float) -> tuple[float | None, float | None]:
        if not config.rekey_time:
            return None, (now + config.life_time) if config.life_time else None
        jitter = self.endpoint.random.uniform(0, config.rand_time or 0) if self.endpoint.jitter else 0
        return now + config.rekey_time - min(jitter, config.rekey_time), now + (config.life_time or config.rekey_time)

    def make_child(self, config: ChildConfig, spi_in: bytes, spi_out: bytes, chosen: ChosenAlgorithms,
                   nonce_i: bytes, nonce_r: bytes, shared: bytes | None, we_are_exchange_initiator: bool,
                   mode: str, local_ts: list[pl.TrafficSelector], remote_ts: list[pl.TrafficSelector], now: float,
                   rekeyed: ChildSA | None,
                   originals: tuple[str | None, str | None] = (None, None),
                   additional: tuple[bytes, ...] = ()) -> ChildSA:
        assert self.algorithms is not None and self.keys is not None
        try:
            # RFC 9370 §2.2.4: KEYMAT from g^ir (new), the nonces and the IKE_FOLLOWUP_KE secrets SK(1) .. SK(n)
            keys = derive_child_sa_keys(self.prf_id, self.keys.sk_d, chosen.encr, chosen.encr_key_length,
                                        chosen.integ or 0, nonce_i, nonce_r, shared, additional)
        except CryptoError as err:
            raise ExchangeFailed(str(err), NotifyType.NO_PROPOSAL_CHOSEN) from None
        # RFC 7296 §2.17: initiator-to-responder keys first
        keys_i, keys_r = ChildKeys(keys.encr_i, keys.integ_i), ChildKeys(keys.encr_r, keys.integ_r)
        keys_out, keys_in = (keys_i, keys_r) if we_are_exchange_initiator else (keys_r, keys_i)
        rekey_at, expire_at = self._child_lifetimes(config, now)
        child = ChildSA(self.endpoint.new_child_id(), config, spi_in, spi_out, chosen, keys_in, keys_out, mode,
                        list(local_ts), list(remote_ts), now, rekey_at, expire_at, nonces=(nonce_i, nonce_r),
                        created_by_us=we_are_exchange_initiator)
        self.children.append(child)
        self.endpoint.trace(now, "state", ike_sa=self.unique_id, object="CHILD_SA", name=config.name,
                            old="CREATED", new="INSTALLED", spi_in=spi_in.hex(), spi_out=spi_out.hex())
        self.endpoint.emit(ChildSaUp(
            self.unique_id, config.name, child.unique_id, chosen.protocol, spi_in, spi_out, chosen.encr,
            chosen.encr_key_length, chosen.integ or 0, chosen.esn, keys_in, keys_out, mode, tuple(local_ts),
            tuple(remote_ts), self.local, self.remote, self.nat_detected, config.replay_window, str(chosen),
            rekeyed.spi_in if rekeyed is not None else None, we_are_exchange_initiator, *originals))
        return child

    def install_child_from_response(self, config: ChildConfig, spi_in: bytes, payloads: list[pl.Payload],
                                    nonce_i: bytes, nonce_r: bytes, shared: bytes | None, now: float, *,
                                    we_initiated: bool, rekeyed: ChildSA | None,
                                    proposals: list[pl.Proposal] | None = None,
                                    additional: tuple[bytes, ...] = ()) -> ChildSA:
        sa, tsi, tsr = first(payloads, pl.SA), first(payloads, pl.TSi), first(payloads, pl.TSr)
        if sa is None or tsi is None or tsr is None:
            raise ExchangeFailed("response lacks SA, TSi or TSr for the CHILD_SA")
        offered = proposals if proposals is not None else self.child_proposals(config, spi_in, pfs=False)
        chosen = self.check_returned_proposal(sa, offered, offered[0].protocol_id if offered else ProtocolId.ESP)
        if len(chosen.spi) != 4:
            raise ExchangeFailed(f"responder's {name_of(ProtocolId, chosen.protocol)} SPI has {len(chosen.spi)} "
                                 f"octets, not 4")
        if chosen.protocol == ProtocolId.AH and self.nat_detected:
            raise ExchangeFailed("AH cannot cross a NAT (its ICV covers the IP addresses; RFC 3948 is ESP only)")
        ours_i = list(rekeyed.local_ts) if rekeyed else self.child_local_ts(config)
        ours_r = list(rekeyed.remote_ts) if rekeyed else self.child_remote_ts(config)
        transport = find_notify(payloads, NotifyType.USE_TRANSPORT_MODE) is not None
        mode = "transport" if transport and config.mode == ChildMode.TRANSPORT else "tunnel"
        if config.mode == ChildMode.TRANSPORT and not transport:
            raise ExchangeFailed("responder refused transport mode")
        got_i: Sequence[pl.TrafficSelector | pl.RawTrafficSelector] = list(tsi.selectors)
        got_r: Sequence[pl.TrafficSelector | pl.RawTrafficSelector] = list(tsr.selectors)
        originals: tuple[str | None, str | None] = (None, None)
        if mode == "transport" and self.nat_detected:
            # RFC 7296 §2.23.1, initiator: keep the selectors as received, then substitute the
            # NATed side's address before using them for anything else (the narrowing check too)
            originals = (selector_address(got_i), selector_address(got_r))
            if self.local_behind_nat:
                got_i = transport_nat_selectors(got_i, self.local[0])
            if self.remote_behind_nat:
                got_r = transport_nat_selectors(got_r, self.remote[0])
        if not got_i or not got_r or not covers(ours_i, got_i) or not covers(ours_r, got_r):
            # RFC 7296 §2.9: the responder may only narrow
            raise ExchangeFailed("responder's traffic selectors are not within ours")
        return self.make_child(config, spi_in, chosen.spi, chosen, nonce_i, nonce_r, shared, True, mode,
                               parsed(got_i), parsed(got_r), now, rekeyed, originals=originals, additional=additional)

    def find_child(self, spi: bytes, inbound: bool) -> ChildSA | None:
        for child in self.children:
            if (child.spi_in if inbound else child.spi_out) == spi and child.state != ChildState.DELETED:
                return child
        return None

    def remove_child(self, child: ChildSA, reason: str, now: float) -> None:
        if child.state == ChildState.DELETED:
            return
        child.state = ChildState.DELETED
        if child in self.children:
            self.children.remove(child)
        self.child_rekeys_done.pop(child.spi_in, None)
        child.keys_in = child.keys_out = ChildKeys(b"", b"")  # gone with the SA
        self.endpoint.trace(now, "state", ike_sa=self.unique_id, object="CHILD_SA", name=child.config.name,
                            old="INSTALLED", new="DELETED", spi_in=child.spi_in.hex(), reason=reason)
        self.endpoint.emit(ChildSaDeleted(self.unique_id, child.config.name, child.spi_in, child.spi_out, reason))

    def finish_child_rekey(self, old: ChildSA, new: ChildSA, now: float) -> None:
        """A rekey of `old` completed, by our exchange or the peer's. RFC 7296 §2.8: the rekey
        initiator deletes the old SA once the new one is up; §2.8.1: when both sides rekeyed
        at once, the new SA made with the lowest nonce is redundant and its creator deletes it."""
        done = self.child_rekeys_done.setdefault(old.spi_in, [])
        done.append((new, new.created_by_us))
        if len(done) == 1 and not new.created_by_us and old.state == ChildState.REKEYING:
            return  # our own rekey of it is in flight: wait for it to decide
        self._resolve_child_rekey(old, now)

    def child_rekey_failed(self, old: ChildSA, now: float) -> None:
        """Our rekey of `old` did not complete; a rekey by the peer may have."""
        if self.child_rekeys_done.get(old.spi_in):
            self._resolve_child_rekey(old, now)
        elif old.state == ChildState.REKEYING:
            old.state = ChildState.INSTALLED

    def _resolve_child_rekey(self, old: ChildSA, now: float) -> None:
        done = [child for child, _ in self.child_rekeys_done.pop(old.spi_in, [])]
        if not done:
            return
        winner = done[0]
        if len(done) > 1:
            loser = min(done, key=lambda c: min(c.nonces))
            winner = next(c for c in done if c is not loser)
            self.trace_note(now, "rekey_collision", child=old.config.name, redundant=loser.spi_in.hex(),
                            kept=winner.spi_in.hex())
            if loser.created_by_us:
                self.tm.queue(ChildDelete([loser], "redundant after a rekey collision"), now)
        old.state = ChildState.REKEYED
        self.endpoint.emit(ChildSaRekeyed(self.unique_id, old.config.name, old.spi_in, old.spi_out, winner.spi_in,
                                          winner.spi_out))
        if winner.created_by_us:
            self.tm.queue(ChildDelete([old], "rekeyed"), now)

    def finish_ike_rekey(self, new: IkeSA, nonces: tuple[bytes, bytes], we_initiated: bool, now: float) -> None:
        """RFC 7296 §2.18: children move to the new IKE SA, the rekey initiator deletes the old
        one; §2.8.2: in a collision the new IKE SA with the lowest nonce is redundant."""
        self.ike_rekeys_done.append((new, nonces, we_initiated))
        if len(self.ike_rekeys_done) == 1 and not we_initiated and self.rekeying_ike is not None:
            return  # our own IKE rekey is in flight: wait for it to decide
        self._resolve_ike_rekey(now)

    def ike_rekey_failed(self, now: float) -> None:
        self.rekeying_ike = None
        if self.ike_rekeys_done:
            self._resolve_ike_rekey(now)

    def _resolve_ike_rekey(self, now: float) -> None:
        done, self.ike_rekeys_done = self.ike_rekeys_done, []
        winner = done[0]
        if len(done) > 1:
            loser = min(done, key=lambda entry: min(entry[1]))
            winner = next(entry for entry in done if entry is not loser)
            self.trace_note(now, "ike_rekey_collision", redundant=loser[0].our_spi.hex(), kept=winner[0].our_spi.hex())
            if loser[2]:
                loser[0].tm.queue(IkeDelete("redundant after an IKE rekey collision"), now)
            else:
                # RFC 7296 §2.8.2: its creator deletes it; should that never come, we delete it (as strongSwan does)
                loser[0].tm.delayed.append((now + self.endpoint.settings.half_open_timeout,
                                         IkeDelete("redundant after an IKE rekey collision, not deleted by the peer")))
        self._move_to(winner[0], now)
        self.set_state(IkeState.REKEYED, now)
        if winner[2]:
            self.tm.queue(IkeDelete("rekeyed"), now)

    def _move_to(self, new: IkeSA, now: float) -> None:
        for child in self.children:
            new.children.append(child)
        self.children = []
        new.virtual_ips, new.assigned_ips = list(self.virtual_ips), list(self.assigned_ips)
        new.radius_framed_ip, new.radius_classes, new.radius_server = (self.radius_framed_ip, self.radius_classes,
                                                                       self.radius_server)
        self.endpoint.emit(IkeSaRekeyed(self.unique_id, new.unique_id, new.spi_i, new.spi_r))
        self.tm.hand_over_child_tasks(new.tm, now)


    def rekeyed(self, we_initiated: bool, spi_i: bytes, spi_r: bytes, chosen: ChosenAlgorithms, shared: bytes,
                nonce_i: bytes, nonce_r: bytes, now: float, additional: tuple[bytes, ...] = ()) -> IkeSA:
        """The IKE SA made by rekeying this one (RFC 7296 §2.18), registered with the endpoint."""
        assert self.algorithms is not None and self.keys is not None
        new = IkeSA(self.endpoint, 0, self.config, we_initiated, self.local, self.remote, spi_i, spi_r, now)
        self.endpoint.register(new)
        new.nonce_i, new.nonce_r = nonce_i, nonce_r
        new.local_id, new.remote_id = self.local_id, self.remote_id
        new.local_behind_nat, new.remote_behind_nat = self.local_behind_nat, self.remote_behind_nat
        new.peer_fragmentation, new.peer_hashes = self.peer_fragmentation, self.peer_hashes
        new.original_initiator, new.mobike, new.peer_mobike = self.original_initiator, self.mobike, self.peer_mobike
        new.peer_addresses = list(self.peer_addresses)
        new.peer_intermediate = self.peer_intermediate
        new.ipsec_path = self.ipsec_path
        new_prf, new_encr = _prf_and_encr(chosen)
        keys = derive_rekeyed_ike_sa_keys(self.prf_id, self.keys.sk_d, new_prf, new_encr,
                                          chosen.encr_key_length, chosen.integ or 0, shared, nonce_i, nonce_r,
                                          spi_i, spi_r, additional)
        new.set_algorithms(chosen, shared, keys)
        new.set_state(IkeState.ESTABLISHED, now)
        new.schedule_ike_lifetime(now)
        return new

    # ------------------------------------------------------------ timers

    def next_timer(self) -> float | None:
        times = []
        due = self.tm.next_timer()
        if due is not None:
            times.append(due)
        if self.state == IkeState.ESTABLISHED:
            if self.rekey_at is not None:
                times.append(self.rekey_at)
            if self.expire_at is not None:
                times.append(self.expire_at)
            if self.config.dpd_delay and self.tm.pending is None:
                times.append(self.last_heard + self.config.dpd_delay)
            for child in self.children:
                if child.rekey_at is not None and child.state == ChildState.INSTALLED:
                    times.append(child.rekey_at)
                if child.expire_at is not None:
                    times.append(child.expire_at)
        if self.destroy_at is not None:
            times.append(self.destroy_at)
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        if self.destroy_at is not None and now >= self.destroy_at:
            self.destroy("half-open SA timed out" if self.state == IkeState.CONNECTING else "expired", now)
            return
        if not self.tm.on_timer(now):
            return
        if self.state != IkeState.ESTABLISHED:
            return
        if self.expire_at is not None and now >= self.expire_at:
            self.tm.queue(IkeDelete("IKE SA lifetime expired"), now, front=True)
            self.expire_at = None
            return
        if self.rekey_at is not None and now >= self.rekey_at:
            self.rekey_at = None
            self.tm.queue(IkeRekey(), now)
        if (self.config.dpd_delay and self.tm.pending is None and not self.tm.tasks
                and now >= self.last_heard + self.config.dpd_delay):
            self.last_heard = now
            self.tm.queue(Dpd(), now)
        for child in list(self.children):
            if child.expire_at is not None and now >= child.expire_at:
                child.expire_at = None
                self.tm.queue(ChildDelete([child], "CHILD_SA lifetime expired"), now, front=True)
            elif child.rekey_at is not None and now >= child.rekey_at and child.state == ChildState.INSTALLED:
                child.rekey_at = None
                self.tm.queue(ChildCreate(child.config, child), now)

    def dpd_action(self) -> str:
        # swanctl.conf dpd_action: restart is stored as START, clear as NONE (strongSwan's action_t)
        actions = {str(c.dpd_action) for c in self.config.children.values()}
        return "restart" if "start" in actions else ("trap" if "trap" in actions else "clear")

    # ------------------------------------------------------------ the end

    def destroy(self, reason: str, now: float, quiet: bool = False) -> None:
        if self.state == IkeState.DELETED:
            return
        for child in list(self.children):
            self.remove_child(child, reason, now)
        self.tm.clear(reason, now)
        was = self.state
        self.set_state(IkeState.DELETED, now)
        # no key material outlives its SA (RFC 7296 §2.12: forget DH secrets and keys once done)
        self.keys = self.cipher = self.kex = self.rekeying_ike = None
        self.ike_rekeys_done = []
        if was != IkeState.REKEYED or not quiet:
            self.endpoint.emit(IkeSaDeleted(self.unique_id, self.config.name, reason))
        self.endpoint.forget(self)
