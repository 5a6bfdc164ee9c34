"""The live collector: eBPF probes (or capture + /proc/net polling without them) -> the store."""
