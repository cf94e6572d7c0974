"""A Ctrl-C or SIGTERM during a long VICI request (charon's initiate, streaming its log until the
CHILD_SA is up) ends the run at once: the runner's handler shuts the request's socket before it
raises, so vici's generator, unwinding, does not send its unregister and wait for an answer on a
stream cut in the middle of a message (a killed run in CI never ended that way)."""

from __future__ import annotations

import signal
import socket
import struct
import threading
import types

import pytest

from lab.net.runner import RunInterrupted, _Signals
from lab.net.strongswan import StrongSwan


class _Charon(threading.Thread):
    """A VICI server that confirms the event registration, takes the initiate, sends one log
    event and then the first half of another (its header and part of its payload), and stalls;
    it records what the client sends after that (an unregister or nothing before the end), and
    ends the connection 5 s after the stall if the client has not."""

    def __init__(self, server: socket.socket) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stalled = threading.Event()
        self.after: list[bytes] = []
        self.closed = threading.Event()

    def run(self) -> None:
        from vici.protocol import Message, Packet, Transport

        conn = self.server
        wire = Transport(conn)
        assert wire.receive()[0] == Packet.EVENT_REGISTER
        wire.send(bytes([Packet.EVENT_CONFIRM]))
        assert wire.receive()[0] == Packet.CMD_REQUEST
        name = b"control-log"
        log = Message.serialize({"msg": "initiating IKE_SA hub[1] to 192.0.2.1"})
        wire.send(bytes([Packet.EVENT, len(name)]) + name + log)
        event = bytes([Packet.EVENT, len(name)]) + name + log
        conn.sendall(struct.pack("!I", len(event)) + event[:5])  # cut in the middle of a message
        self.stalled.set()
        conn.settimeout(5)  # a client that waits on: the test ends, and fails on `after`
        try:
            while True:
                self.after.append(wire.receive())
        except TimeoutError:
            self.after.append(b"(the client still waits)")
        except OSError:
            pass  # closed, or reset (the client shut its socket with our half message unread): the end
        conn.close()
        self.closed.set()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupt_during_initiate_ends_it_without_waiting_on_charon(signum):
    import vici

    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    charon = _Charon(server)
    charon.start()

    def session(timeout: float) -> vici.Session:
        client.settimeout(timeout)
        return vici.Session(client)

    peer = types.SimpleNamespace(name="gwb", vici=session)
    main = threading.main_thread().ident
    kicker = threading.Thread(target=lambda: charon.stalled.wait(10) and signal.pthread_kill(main, signum),
                              daemon=True)
    with _Signals():
        kicker.start()
        with pytest.raises(RunInterrupted) as caught:
            StrongSwan._streamed(peer, "initiate", {"child": "net", "timeout": "20000"}, 20)
    assert str(caught.value) == signal.Signals(signum).name
    assert charon.closed.wait(10), "the request's socket stayed open"
    assert charon.after == [], "vici went on talking to charon after the interrupt (an unregister waits for its answer)"
