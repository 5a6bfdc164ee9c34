"""Loopback capture for tests: the implementation lives in analyzer.demo.capture (the demo ships it)."""

from analyzer.demo.capture import Capture, bpf_for_ports, capture_loopback, capture_tool

__all__ = ["Capture", "bpf_for_ports", "capture_loopback", "capture_tool"]
