"""The in-memory network of the IKE unit tests: now lab.ike.memnet (the notebooks use it too)."""
from lab.ike.memnet import GW_A, GW_B, Net, cert_configs, make_net, make_pki, pair_configs, s2s_config  # noqa: F401
