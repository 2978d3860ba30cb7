"""`python -m examples.partner_site --gateway URL --key-file FILE [--port 8070]`."""

from __future__ import annotations

import argparse
import os
import sys

from werkzeug.serving import make_server

from examples.partner_site import create_app

KEY_ENV = "PARTNER_GATEWAY_KEY"


def read_key(path: str | None) -> str:
    """The partner key from a file, else from $PARTNER_GATEWAY_KEY; never from a flag."""
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    return os.environ.get(KEY_ENV, "").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.partner_site",
                                     description="An example partner website using the gateway.")
    parser.add_argument("--gateway", required=True, metavar="URL", help="the gateway's base URL")
    parser.add_argument("--key-file", metavar="FILE",
                        help=f"file holding the partner key (else ${KEY_ENV})")
    parser.add_argument("--partner", default="example", help="partner name (the tokens' aud)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8070)
    parser.add_argument("--site-url", metavar="URL", help="this site's public base URL")
    args = parser.parse_args(argv)
    try:
        key = read_key(args.key_file)
    except OSError as exc:
        print(f"error: cannot read {args.key_file}: {exc.strerror}", file=sys.stderr)
        return 1
    if not key:
        print(f"error: no partner key: use --key-file FILE or set {KEY_ENV}", file=sys.stderr)
        return 1
    app = create_app({"GATEWAY_URL": args.gateway, "GATEWAY_KEY": key, "PARTNER": args.partner,
                      "SITE_URL": args.site_url})
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"Example partner site on http://{args.host}:{server.port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
