"""gatewayd: a supervisor daemon for the OpenClaw gateway."""

__version__ = "0.1.0"
