"""lab.esp: the sans-I/O ESP/AH data plane (RFC 4303, RFC 4302, RFC 3948, RFC 4301 SPD/SAD).

Packets in, packets out: no sockets, no clock (time is passed in), no logging.
"""
from .algorithms import encr_keymat_size, icv_size, integ_keymat_size
from .errors import DropCounters, DropReason, EspConfigError, EspDrop
from .ip import FiveTuple, five_tuple
from .lifetime import Lifetime, SaEvent, SaEventKind, SaState
from .replay import ReplayWindow
from .sa import SEQ_MAX_32, SEQ_MAX_64, DfPolicy, InboundSA, IpsecProto, Mode, OutboundSA, UdpEncap
from .sad import SADatabase
from .spd import SPD, Action, Policy, Selector, icmp_range

__all__ = [
    "SEQ_MAX_32",
    "SEQ_MAX_64",
    "SPD",
    "Action",
    "DfPolicy",
    "DropCounters",
    "DropReason",
    "EspConfigError",
    "EspDrop",
    "FiveTuple",
    "InboundSA",
    "IpsecProto",
    "Lifetime",
    "Mode",
    "OutboundSA",
    "Policy",
    "ReplayWindow",
    "SADatabase",
    "SaEvent",
    "SaEventKind",
    "SaState",
    "Selector",
    "UdpEncap",
    "encr_keymat_size",
    "five_tuple",
    "icmp_range",
    "icv_size",
    "integ_keymat_size",
]
