"""Profile the gateway's hot path: `.venv/bin/python -m bench.profile [--op status|create]`.

Builds the same deployment as the other benchmarks (emulator subprocess, `gateway init`,
`docusign configure --sandbox`, `partners add`), then makes `--requests` partner calls
in-process through Flask's test client under pyinstrument (`pip install pyinstrument`), so
the profile shows the gateway's own work per request: key check, policy, rate limit,
view, audit. gunicorn's HTTP parsing is not in it (the bare route's figure is that floor).
Prints the call tree; `--html FILE` also writes pyinstrument's interactive page.
"""

from __future__ import annotations

import argparse
import sys
import time
import typing as t

from bench import harness


def _calls(client: t.Any, gw: harness.Gateway, op: str, envelope_id: str) -> t.Callable[[], t.Any]:
    if op == "create":
        return lambda: client.post("/v1/envelopes", json=harness.CREATE_BODY, headers=gw.auth)
    return lambda: client.get(f"/v1/envelopes/{envelope_id}", headers=gw.auth)


def _repeat(call: t.Callable[[], t.Any], times: int) -> None:
    for _ in range(times):
        resp = call()
        if resp.status_code >= 300:
            raise harness.BenchError(f"{resp.status_code}: {resp.get_data(as_text=True)[:200]}")


def profile(args: argparse.Namespace) -> tuple[str, tuple[float, float]]:
    """The rendered profile and the mean in-process (wall, CPU) milliseconds per request."""
    from pyinstrument import Profiler

    with harness.workspace() as ws:
        sandbox = harness.start_emulator(ws, unlimited=True)
        gw = harness.prepare_gateway(ws, sandbox, unlimited=True)
        client = harness.app_for(gw).test_client()
        created = client.post("/v1/envelopes", json=harness.CREATE_BODY, headers=gw.auth)
        call = _calls(client, gw, args.op, created.get_json()["envelope_id"])
        for _ in range(50):
            call()
        started, cpu = time.perf_counter(), time.process_time()
        _repeat(call, args.requests)
        per_request = ((time.perf_counter() - started) * 1000 / args.requests,
                       (time.process_time() - cpu) * 1000 / args.requests)
        profiler = Profiler(interval=0.0002)
        if args.profile:
            with profiler:
                _repeat(call, args.requests)
    if not args.profile:
        return "", per_request
    if args.html:
        with open(args.html, "w") as fh:
            fh.write(profiler.output_html())
    return profiler.output_text(unicode=False, color=False, show_all=args.all), per_request


def main(argv: t.Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--op", choices=("status", "create"), default="status")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="only time the requests (ms per request, profiler off)")
    p.add_argument("--all", action="store_true", help="show library frames too")
    p.add_argument("--html", metavar="FILE", help="also write pyinstrument's HTML page here")
    args = p.parse_args(argv)
    text, per_request = profile(args)
    print(text)
    wall, cpu = per_request
    print(f"{args.op}: {wall:.3f} ms wall, {cpu:.3f} ms CPU per request in-process (profiler off)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
