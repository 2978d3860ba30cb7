"""`python -m examples.partner_site --gateway URL --key-file FILE [--port 8070]`.

The gateway's webhooks (`POST /hooks/signing`) need the partner's `whsec_...` secret:
`--webhook-secret-file FILE`, else $PARTNER_WEBHOOK_SECRET. Without one, the outcome
page learns of the countersignature from the gateway's status API alone.
"""

from __future__ import annotations

import argparse
import os
import sys

from werkzeug.serving import make_server

from examples.partner_site import create_app
from examples.partner_site.hooks import SECRET_ENV

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
    parser.add_argument("--webhook-secret-file", metavar="FILE",
                        help=f"file holding the partner's whsec_ webhook secret (else ${SECRET_ENV})")
    args = parser.parse_args(argv)
    try:
        key = read_key(args.key_file)
    except OSError as exc:
        print(f"error: cannot read {args.key_file}: {exc.strerror}", file=sys.stderr)
        return 1
    if not key:
        print(f"error: no partner key: use --key-file FILE or set {KEY_ENV}", file=sys.stderr)
        return 1
    webhook_secret = None
    if args.webhook_secret_file:
        try:
            with open(args.webhook_secret_file, encoding="utf-8") as fh:
                webhook_secret = fh.read().strip()
        except OSError as exc:
            print(f"error: cannot read {args.webhook_secret_file}: {exc.strerror}", file=sys.stderr)
            return 1
    try:
        app = create_app({"GATEWAY_URL": args.gateway, "GATEWAY_KEY": key,
                          "PARTNER": args.partner, "SITE_URL": args.site_url,
                          "WEBHOOK_SECRET": webhook_secret})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
