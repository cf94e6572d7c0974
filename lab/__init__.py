"""ipsec-lab: an IPsec teaching and simulation lab with its own IKEv2/ESP stack."""

__version__ = "0.1.0"
