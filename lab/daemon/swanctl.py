"""Moved to lab.conf.swanctl (swanctl.conf is read below the daemon); this name stays importable for now."""
from lab.conf.swanctl import *  # noqa: F401,F403
from lab.conf.swanctl import __all__  # noqa: F401
