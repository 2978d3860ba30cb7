"""``python -m sandbox --host 127.0.0.1 --port 8090``: the emulator in the foreground."""

from __future__ import annotations

import argparse
import sys

from .server import serve


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and serve; a bind error is one line on stderr and exit 1."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Strict DocuSign eSignature emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="TCP port (default 8090)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, not {args.port}")
    try:
        serve(args.host, args.port)
    except OSError as exc:
        print(
            f"sandbox: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
