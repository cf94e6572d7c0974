"""lab.conf: swanctl.conf read (`settings` the syntax, `swanctl` the objects) and written (`writer`),
pure: no sockets, no processes.

Below lab.daemon and lab.net, above lab.ike: the reader builds `lab.ike.config` objects, and
every error it raises reads `file:line: dotted.key: message`.
"""
from .settings import ConfigError, Section, Setting, parse_settings
from .swanctl import SwanctlConfig, load_swanctl, parse_swanctl
from .writer import render, render_s2s_conf

__all__ = ["ConfigError", "Section", "Setting", "SwanctlConfig", "load_swanctl", "parse_settings", "parse_swanctl",
           "render", "render_s2s_conf"]
