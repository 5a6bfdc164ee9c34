"""Write a large synthetic pcap (tests/support/gen_capture.py): many TLS 1.3 flows, each after DNS.

    python bench/gen_capture.py OUT.pcap [--packets 500000] [--data 20] [--pq]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/X.py`: the repo root

from tests.support.gen_capture import generate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--packets", type=int, default=500_000)
    ap.add_argument("--data", type=int, default=20, help="application-data packets per connection")
    ap.add_argument("--pq", action="store_true",
                    help="ClientHellos with a post-quantum key share, over two segments (~1.6 KB)")
    a = ap.parse_args(argv)
    t = time.monotonic()
    info = generate(a.out, a.packets, a.data, pq=a.pq)
    print(f"wrote {a.out}: {info} ({os.path.getsize(a.out) / 1e6:.0f} MB) in {time.monotonic() - t:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
