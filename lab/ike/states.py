"""The states of an IKE SA and of a CHILD SA."""
from __future__ import annotations

from enum import Enum


class IkeState(Enum):
    CONNECTING = "CONNECTING"
    ESTABLISHED = "ESTABLISHED"
    REKEYED = "REKEYED"
    DELETING = "DELETING"
    DELETED = "DELETED"


class ChildState(Enum):
    INSTALLED = "INSTALLED"
    REKEYING = "REKEYING"
    REKEYED = "REKEYED"
    DELETING = "DELETING"
    DELETED = "DELETED"
