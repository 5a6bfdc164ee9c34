"""Sans-IO protocol layers: bytes in, messages out (HTTP/1.1, HTTP/2, SSE)."""
