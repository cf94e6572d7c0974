"""IKEv2 (RFC 7296) as a pure, sans-I/O protocol core."""
