"""`python -m bench.emulator --port N [--unlimited]`: the DocuSign emulator for benchmarks.

The same server as `gateway sandbox --port N` (werkzeug, threaded, in-memory state). With
`--unlimited` DocuSign's account limits (hourly, burst, one status poll per envelope per
15 minutes) are lifted, so a load test measures the gateway rather than the emulator's
refusals; the economy benchmark runs without it, under DocuSign's real limits.
"""

from __future__ import annotations

import argparse
import sys
import typing as t

UNLIMITED: dict[str, t.Any] = {
    "SANDBOX_HOURLY_LIMIT": 10**9,
    "SANDBOX_BURST_LIMIT": 10**9,
    "SANDBOX_ENVELOPE_POLL_LIMIT": 10**9,
}


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and serve in the foreground until SIGTERM / Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m bench.emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--unlimited", action="store_true",
                        help="lift DocuSign's hourly, burst and polling limits")
    parser.add_argument("--connect-retry", type=float, default=None,
                        help="seconds between Connect delivery retries (default: the emulator's)")
    args = parser.parse_args(argv)
    from sandbox.server import serve

    config: dict[str, t.Any] = dict(UNLIMITED) if args.unlimited else {}
    if args.connect_retry is not None:
        config["SANDBOX_CONNECT_RETRY_DELAYS"] = (args.connect_retry,) * 3
    serve(args.host, args.port, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
