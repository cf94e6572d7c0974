"""The task manager of one IKE SA (libcharon's task_manager_v2): the queue of exchanges we
initiate, message IDs and the window of one (RFC 7296 §2.3), retransmissions (§2.1, §2.4),
the cached response to a retransmitted request, fragments (RFC 7383), and the responder task
that answers each request."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import payloads as pl
from .config import Fragmentation
from .const import ExchangeType, NotifyType, name_of
from .errors import CryptoError, ExchangeFailed, IntegrityError, ParseError
from .events import NegotiationFailed, PeerUnreachable
from .message import Message
from .payloads import parse_chain, serialize_chain
from .profiles import windows_error
from .protect import (
    Reassembly,
    ReassemblyError,
    decrypt_fragment,
    decrypt_plain,
    encrypt,
    encrypt_fragments,
    int_auth_data,
)
from .states import IkeState
from .tasks import (
    ChildCreate,
    ChildDelete,
    IkeAuth,
    IkeDelete,
    IkeInit,
    IkeIntermediate,
    Task,
    notify,
    responder_task,
)
from .tasks.ike_mobike import echo_cookie2
from .tasks.ike_natd import follow_peer

if TYPE_CHECKING:
    from .sa import IkeSA

Address = tuple[str, int]


@dataclass
class Pending:
    task: Task
    message_id: int
    datagrams: list[bytes]
    sent_at: float
    tries: int = 0
    next_at: float = 0.0


class TaskManager:
    def __init__(self, ike: IkeSA) -> None:
        self.ike = ike
        self.tasks: deque[Task] = deque()
        self.delayed: list[tuple[float, Task]] = []
        self.pending: Pending | None = None
        self.mid_out = 0
        self.mid_in = 0
        self.last_response: list[bytes] = []
        # the request being answered came from request_src to request_dst: RFC 7296 §2.11, the
        # response goes back there (with MOBIKE not always the IKE SA's addresses, RFC 4555 §3.8)
        self.request_src: Address | None = None
        self.request_dst: Address | None = None
        self.reassembly: dict[tuple[bool, int], Reassembly] = {}
        self.refused: set[tuple[bool, int]] = set()  # messages whose fragments broke a limit
        self.pending_response_spi_r = b""
        self.plain: tuple[int, bytes] = (0, b"")  # the last message's inner payloads in cleartext
        # a response held while the I/O layer asks RADIUS (auth = eap-radius): (task, exchange, message ID)
        self.holding = False
        self.held: tuple[Task, int, int] | None = None

    @property
    def pending_task(self) -> Task | None:
        return self.pending.task if self.pending is not None else None

    # ------------------------------------------------------------ the queue

    def queue(self, task: Task, now: float, front: bool = False) -> None:
        if front:
            self.tasks.appendleft(task)
        else:
            self.tasks.append(task)
        self.start_next(now)

    def retry(self, task: Task, now: float) -> None:
        """Send the same exchange again, with a new message (INVALID_KE, COOKIE)."""
        self.pending = None
        if task.exchange == ExchangeType.IKE_SA_INIT:
            self.mid_out = 0
        self.tasks.appendleft(task)
        self.start_next(now)

    def retry_later(self, task: Task, now: float) -> None:
        # RFC 7296 §2.25: wait before retrying; a random wait, or two sides refusing each other
        # (an IKE rekey against a CHILD_SA rekey, §2.25.2) retry in step and collide forever
        settings = self.ike.endpoint.settings
        delay = settings.temporary_failure_retry - self.ike.endpoint.random.uniform(0, settings.temporary_failure_jitter)
        self.delayed.append((now + delay, task))

    def start_next(self, now: float) -> None:
        ike = self.ike
        if self.pending is not None or ike.state == IkeState.DELETED:
            return
        while self.tasks and self.pending is None:
            task = self.tasks.popleft()
            if ike.state == IkeState.REKEYED and not isinstance(task, (IkeDelete, ChildDelete)):
                continue
            if ike.state == IkeState.DELETING and not isinstance(task, IkeDelete):
                continue
            try:
                payloads = task.build_i(ike, now)
            except ExchangeFailed as err:
                self.task_failed(task, err.reason, now)
                continue
            if payloads is None:
                continue
            self.send_request(task, payloads, now)

    def hand_over_child_tasks(self, new: TaskManager, now: float) -> None:
        """RFC 7296 §2.18: CHILD SAs move to the new IKE SA, and the work queued for them too
        (a CHILD_SA rekey refused with TEMPORARY_FAILURE during the IKE rekey, §2.25.2)."""
        child_tasks = (ChildCreate, ChildDelete)
        new.delayed += [entry for entry in self.delayed if isinstance(entry[1], child_tasks)]
        self.delayed = [entry for entry in self.delayed if not isinstance(entry[1], child_tasks)]
        for task in [t for t in self.tasks if isinstance(t, child_tasks)]:
            self.tasks.remove(task)
            new.queue(task, now)

    def clear(self, reason: str, now: float) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            if not isinstance(pending.task, (IkeDelete, ChildDelete)):
                pending.task.abort(self.ike, reason, now)
        self.tasks.clear()
        self.delayed.clear()
        self.held = None

    def task_failed(self, task: Task, reason: str, now: float) -> None:
        ike = self.ike
        name = name_of(ExchangeType, task.exchange)
        ike.endpoint.emit(NegotiationFailed(ike.unique_id, ike.config.name, name, reason))
        task.abort(ike, reason, now)
        if isinstance(task, (IkeInit, IkeIntermediate, IkeAuth)):
            ike.destroy(f"{name} failed: {reason}", now, quiet=True)

    # ------------------------------------------------------------ sending

    def _template(self, exchange: int, message_id: int, response: bool) -> Message:
        ike = self.ike
        return Message(ike.spi_i, ike.spi_r, exchange, message_id, ike.is_initiator, response)

    def _seal(self, exchange: int, message_id: int, response: bool, payloads: list[pl.Payload]) -> list[bytes]:
        ike = self.ike
        template = self._template(exchange, message_id, response)
        if exchange == ExchangeType.IKE_SA_INIT:
            template.payloads = payloads
            return [template.serialize()]
        assert ike.cipher is not None
        if exchange == ExchangeType.IKE_INTERMEDIATE:
            # RFC 9242 §3.3.2: what we send in IKE_INTERMEDIATE goes into the AUTH payload, under the keys in force
            ike.add_int_auth(not response, int_auth_data(template, *serialize_chain(list(payloads))))
        whole = encrypt(template, payloads, ike.cipher, ike.keys_out, ike.endpoint.random)
        limit = ike.endpoint.settings.fragment_size - self._ip_udp_overhead()
        if (len(whole) > limit and ike.peer_fragmentation and ike.config.fragmentation != Fragmentation.NO
                and exchange != ExchangeType.IKE_SA_INIT) or (ike.config.fragmentation == Fragmentation.FORCE
                                                             and exchange == ExchangeType.IKE_AUTH):
            # RFC 7383 §2.5: fragment once the message would exceed the fragment size
            return encrypt_fragments(template, payloads, ike.cipher, ike.keys_out, ike.endpoint.random, limit)
        return [whole]

    def _ip_udp_overhead(self) -> int:
        ike = self.ike
        ip = 40 if ":" in ike.remote[0] else 20
        return ip + 8 + (4 if ike.local[1] == 4500 or ike.remote[1] == 4500 else 0)

    def _transmit(self, datagrams: list[bytes], exchange: int, message_id: int, response: bool,
                  payloads: list[pl.Payload], now: float) -> None:
        ike = self.ike
        local, remote = ike.local, ike.remote
        if response and self.request_src is not None and self.request_dst is not None:
            local, remote = self.request_dst, self.request_src
        ike.endpoint.trace_message(ike, "out", self._template(exchange, message_id, response), payloads, local,
                                   remote, sum(map(len, datagrams)), now, len(datagrams))
        ike.endpoint.send(ike, datagrams, "messages_out", local, remote)

    def send_request(self, task: Task, payloads: list[pl.Payload], now: float) -> None:
        message_id = self.mid_out
        datagrams = self._seal(task.exchange, message_id, False, payloads)
        if task.exchange == ExchangeType.IKE_SA_INIT:
            self.ike.init_request = datagrams[0]
        self.pending = Pending(task, message_id, datagrams, now, 0,
                               now + self.ike.endpoint.settings.retransmit_timeout)
        self._transmit(datagrams, task.exchange, message_id, False, payloads, now)

    def send_request_once(self, payloads: list[pl.Payload], now: float) -> None:
        """An INFORMATIONAL nobody waits for the answer of (RFC 7296 §2.21.2)."""
        datagrams = self._seal(ExchangeType.INFORMATIONAL, self.mid_out, False, payloads)
        self._transmit(datagrams, ExchangeType.INFORMATIONAL, self.mid_out, False, payloads, now)
        self.mid_out += 1

    def send_response(self, exchange: int, message_id: int, payloads: list[pl.Payload], now: float) -> None:
        datagrams = self._seal(exchange, message_id, True, payloads)
        if exchange == ExchangeType.IKE_SA_INIT:
            self.ike.init_response = datagrams[0]
        self.last_response = datagrams
        self._transmit(datagrams, exchange, message_id, True, payloads, now)

    # ------------------------------------------------------------ timers

    def next_timer(self) -> float | None:
        times = [t for t, _ in self.delayed]
        if self.pending is not None:
            times.append(self.pending.next_at)
        return min(times) if times else None

    def on_timer(self, now: float) -> bool:
        """Retransmit what is due and queue delayed tasks; False when the SA was given up."""
        settings = self.ike.endpoint.settings
        if self.pending is not None and now >= self.pending.next_at:
            pending = self.pending
            if pending.tries >= settings.retransmit_tries:
                self._give_up(pending, now)
                return False
            pending.tries += 1
            # strongSwan's retransmission: timeout * base^tries
            pending.next_at = now + settings.retransmit_timeout * settings.retransmit_base ** pending.tries
            if pending.tries == settings.retransmit_tries:
                pending.next_at = now + settings.retransmit_timeout * settings.retransmit_base ** (pending.tries + 1)
            self.ike.endpoint.trace(now, "retransmit", ike_sa=self.ike.unique_id,
                                    exchange=name_of(ExchangeType, pending.task.exchange),
                                    message_id=pending.message_id, tries=pending.tries)
            self.ike.endpoint.send(self.ike, pending.datagrams, "retransmits")
        for entry in [d for d in self.delayed if d[0] <= now]:
            self.delayed.remove(entry)
            self.queue(entry[1], now)
        return True

    def _give_up(self, pending: Pending, now: float) -> None:
        # RFC 7296 §2.4: the peer is considered dead after the retransmissions
        ike = self.ike
        self.pending = None
        name = name_of(ExchangeType, pending.task.exchange)
        ike.endpoint.emit(PeerUnreachable(ike.unique_id, ike.config.name, name, pending.tries + 1))
        gone = f"peer did not answer {name} after {pending.tries + 1} tries"
        profile = ike.config.client_profile
        if profile is not None and profile.windows_errors and name in ("IKE_SA_INIT", "IKE_AUTH"):
            # what Windows shows when the gateway never answers (UDP 500/4500 blocked on the way)
            gone = windows_error(809, gone)
        pending.task.abort(ike, "retransmissions exhausted", now)
        action = ike.dpd_action()
        ike.destroy(gone, now, quiet=True)
        if action == "restart" and ike.is_initiator:
            ike.endpoint.restart(ike.config, now)

    # ------------------------------------------------------------ receiving

    def receive(self, message: Message, data: bytes, src: Address, dst: Address, now: float) -> None:
        if message.is_response:
            self._receive_response(message, data, src, now)
        else:
            self._receive_request(message, data, src, dst, now)

    def _unprotect(self, message: Message, data: bytes, now: float) -> list[pl.Payload] | None:
        """The inner payloads; None while fragments are missing or when the message does not
        verify (counted as a drop, no state change)."""
        ike = self.ike
        if message.exchange == ExchangeType.IKE_SA_INIT:
            return message.payloads
        if ike.cipher is None:
            ike.endpoint.drop("no keys yet", now, ike)
            return None
        last = message.encrypted
        if last is None:
            # RFC 7296 §3.14: after IKE_SA_INIT everything is protected
            ike.endpoint.drop("unprotected message after IKE_SA_INIT", now, ike)
            return None
        try:
            if isinstance(last, pl.SKF):
                piece = decrypt_fragment(data, message, ike.cipher, ike.keys_in)
                key = (message.is_response, message.message_id)
                if key in self.refused:
                    ike.endpoint.drop("fragment reassembly: fragment of a message already refused", now, ike)
                    return None
                reassembly = self.reassembly.get(key)
                if reassembly is None:
                    # RFC 7383 §5: reassembly costs memory; the buffers are few and each is bounded
                    if not ike.endpoint.reassembly_opened():
                        ike.endpoint.drop("fragment reassembly: every reassembly buffer is taken", now, ike)
                        return None
                    settings = ike.endpoint.settings
                    reassembly = self.reassembly[key] = Reassembly(message.message_id, settings.max_fragments,
                                                                    settings.max_packet)
                try:
                    inner = reassembly.add(last, piece)
                except ParseError:
                    self._close_reassembly(key)
                    raise
                if inner is not None:
                    self.plain = (reassembly.first_type or 0, reassembly.plaintext)
                    self._close_reassembly(key)
                return inner
            self.plain = decrypt_plain(data, message, ike.cipher, ike.keys_in)
            return parse_chain(self.plain[1], self.plain[0], 0)
        except IntegrityError as err:
            ike.endpoint.drop(f"integrity check failed: {err}", now, ike)
        except ParseError as err:
            ike.endpoint.drop(f"malformed encrypted payloads: {err}", now, ike)
        except ReassemblyError as err:
            if err.fatal:
                key = (message.is_response, message.message_id)
                self._close_reassembly(key)
                self.refused.add(key)
            ike.endpoint.drop(f"fragment reassembly: {err}", now, ike)
        except CryptoError as err:
            ike.endpoint.drop(f"cannot decrypt: {err}", now, ike)
        return None

    def _close_reassembly(self, key: tuple[bool, int], done: bool = False) -> None:
        if done:
            self.refused.discard(key)
        if self.reassembly.pop(key, None) is not None:
            self.ike.endpoint.reassembly_closed()

    def _authentic(self, message: Message, data: bytes) -> bool:
        """Whether a protected message verifies under the peer's keys (nothing else is done with it)."""
        ike = self.ike
        if ike.cipher is None or message.encrypted is None:
            return False
        try:
            if isinstance(message.encrypted, pl.SKF):
                decrypt_fragment(data, message, ike.cipher, ike.keys_in)
            else:
                decrypt_plain(data, message, ike.cipher, ike.keys_in)
        except (IntegrityError, ParseError, CryptoError):
            return False
        return True

    def _receive_response(self, message: Message, data: bytes, src: Address, now: float) -> None:
        ike = self.ike
        pending = self.pending
        if pending is None or message.message_id != pending.message_id:
            ike.endpoint.drop(f"unexpected response with message ID {message.message_id}", now, ike)
            return
        if message.exchange != pending.task.exchange:
            ike.endpoint.drop("response of another exchange type", now, ike)
            return
        if pending.task.exchange == ExchangeType.IKE_SA_INIT:
            self.pending_response_spi_r = message.spi_r
            ike.init_response = data
        inner = self._unprotect(message, data, now)
        if inner is None:
            return
        unsupported = [p for p in inner if isinstance(p, pl.UnknownPayload) and p.critical]
        if unsupported:
            ike.endpoint.drop("response with an unsupported critical payload", now, ike)
            return
        ike.endpoint.trace_message(ike, "in", message, inner, src, ike.local, len(data), now)
        ike.last_heard = now
        if message.exchange == ExchangeType.IKE_INTERMEDIATE:
            ike.add_int_auth(False, int_auth_data(message, *self.plain))  # RFC 9242 §3.3.2
        self.pending = None
        self.mid_out = pending.message_id + 1
        self._close_reassembly((True, pending.message_id), done=True)
        follow_peer(ike, src, ike.local, now)
        try:
            pending.task.process_i(ike, inner, now)
        except ExchangeFailed as err:
            self.task_failed(pending.task, err.reason, now)
        self.start_next(now)

    def _receive_request(self, message: Message, data: bytes, src: Address, dst: Address, now: float) -> None:
        ike = self.ike
        if message.message_id == self.mid_in - 1 and self.held is not None:
            # RFC 7296 §2.1: the response is not made yet; the previous one is no answer to this
            # request, and the initiator sends it again until the held response goes out
            ike.endpoint.drop("retransmitted request while its response waits for RADIUS", now, ike)
            return
        if message.message_id == self.mid_in - 1 and self.last_response:
            skf = message.encrypted
            if not isinstance(skf, pl.SKF) or skf.fragment_number == 1:
                if not self._authentic(message, data):
                    # a copy that does not verify is no retransmission: no response for forgeries
                    ike.endpoint.drop("integrity check failed: retransmitted request", now, ike)
                    return
                # RFC 7296 §2.1: a retransmitted request gets the same response again, §2.11: to where it came from
                ike.endpoint.trace(now, "resend_response", ike_sa=ike.unique_id)
                ike.endpoint.send(ike, self.last_response, "responses_resent", dst, src)
            return
        if message.message_id != self.mid_in:
            ike.endpoint.drop(f"request with message ID {message.message_id}, expected {self.mid_in}", now, ike)
            return
        # RFC 9370 §2.2.2: the keys of the last IKE_INTERMEDIATE apply from the next request on
        ike.apply_next_keys()
        inner = self._unprotect(message, data, now)
        if inner is None:
            return
        ike.endpoint.trace_message(ike, "in", message, inner, src, dst, len(data), now)
        if message.exchange == ExchangeType.IKE_INTERMEDIATE:
            ike.add_int_auth(True, int_auth_data(message, *self.plain))  # RFC 9242 §3.3.2
        ike.last_heard = now
        self.mid_in += 1
        self._close_reassembly((False, message.message_id), done=True)
        follow_peer(ike, src, dst, now, first_auth=message.exchange == ExchangeType.IKE_AUTH)
        self.request_src, self.request_dst = src, dst
        unsupported = [p for p in inner if isinstance(p, pl.UnknownPayload) and p.critical]
        if unsupported:
            # RFC 7296 §2.5
            self.send_response(message.exchange, message.message_id, [pl.Notify(
                notify_type=NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, data=bytes([unsupported[0].unknown_type]))], now)
            return
        task = responder_task(message.exchange, inner)
        if task is None:
            ike.endpoint.drop(f"request of unsupported exchange {name_of(ExchangeType, message.exchange)}", now, ike)
            return
        if isinstance(task, IkeAuth) and (ike.is_initiator or ike.state != IkeState.CONNECTING
                                          or ike.additional_pending):  # RFC 9370 §2.2.2: every KE first
            ike.endpoint.drop("IKE_AUTH request on an SA that is not waiting for one", now, ike)
            return
        if isinstance(task, IkeIntermediate) and (ike.is_initiator or ike.state != IkeState.CONNECTING
                                                  or ike.auth_responder is not None):
            ike.endpoint.drop("IKE_INTERMEDIATE request on an SA past IKE_SA_INIT and IKE_INTERMEDIATE", now, ike)
            return
        self.answer(task, message.exchange, message.message_id, inner, now)
        self.start_next(now)

    def answer(self, task: Task, exchange: int, message_id: int, inner: list[pl.Payload], now: float) -> None:
        """Run the responder half of `task` on a request and send its response; a task that
        cannot go on answers with the notify it names."""
        self.request_cookie2 = next((p for p in inner if isinstance(p, pl.Notify)
                                     and p.notify_type == NotifyType.COOKIE2), None)
        self.holding = False
        try:
            task.process_r(self.ike, inner, now)
        except ExchangeFailed as err:
            self.holding = False
            self.send_response(exchange, message_id, self._echo_cookie2(exchange, [
                notify(err.notify or NotifyType.NO_PROPOSAL_CHOSEN, err.data)]), now)
            return
        if self.holding:
            self.holding = False
            self.held = (task, exchange, message_id)
            self.last_response = []  # the previous exchange's response answers nothing now
            return
        self.respond(task, exchange, message_id, now)

    def hold(self) -> None:
        """Called by a responder task in process_r: its response waits for the I/O layer."""
        self.holding = True

    def release(self, now: float) -> None:
        """The held response is ready: build it and send it (to where the request came from)."""
        if self.held is None:
            return
        (task, exchange, message_id), self.held = self.held, None
        self.respond(task, exchange, message_id, now)
        self.start_next(now)

    request_cookie2: pl.Notify | None = None

    def _echo_cookie2(self, exchange: int, payloads: list[pl.Payload]) -> list[pl.Payload]:
        cookie2, self.request_cookie2 = self.request_cookie2, None
        return echo_cookie2(exchange, cookie2, payloads)  # RFC 4555 §3.7

    def respond(self, task: Task, exchange: int, message_id: int, now: float) -> None:
        """Send the response `task` built to the request it processed."""
        payloads = task.build_r(self.ike, now)
        if exchange == ExchangeType.IKE_SA_INIT:
            self.mid_in = message_id + 1
        payloads = self._echo_cookie2(exchange, payloads)
        self.send_response(exchange, message_id, payloads, now)
        task.responded(self.ike, now)
