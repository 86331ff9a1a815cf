"""Dialing-control tests reuse the runtime harness (a real instance in-process, the embedded server and
the simulator over HTTP)."""
