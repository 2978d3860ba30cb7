"""Benchmark 3, upstream call economy: `.venv/bin/python -m bench.economy`.

The same signer journey, `--signers` times, by two clients, each against its own emulator
running under DocuSign's real limits (3,000 calls an hour, 200 per 30 s, one status poll
per envelope per 15 minutes), with DocuSign calls counted by endpoint by the emulator
(`/_sandbox/calls`):

- the gateway (`--workers` gunicorn workers, Connect wired with `gateway docusign
  sandbox-connect`): create, recipient view, two status reads, signing (the signer's
  browser posts the emulator's Sign form and follows the redirect to the gateway's return
  relay), the Connect event, a third status read;
- a naive integration calling DocuSign directly: a new token before every call, recipient
  view as send + view, and status by polling DocuSign.

Partner operations are the five API calls a partner makes per signer (create, recipient
view, three status reads); signing and the Connect event are not partner calls.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import re
import sys
import time
import typing as t
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urljoin

import requests

from bench import harness
from bench.direct import DirectDocuSign
from bench.report import Report
from bench.report import table

OPS_PER_SIGNER = 5
ENDPOINTS = ("token", "userinfo", "create_envelope", "update_envelope", "recipient_view",
             "get_envelope", "list_recipients", "list_status_changes")
_SIGN_FORM_RE = re.compile(r'<form[^>]*action="([^"]*/sign)"')


@dataclass
class Outcome:
    """What one client's run did and what it cost upstream."""

    client: str
    signers: int
    seconds: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    final: dict[str, int] = field(default_factory=dict)
    connect_ok: int = 0


def calls(sandbox: str) -> dict[str, int]:
    return dict(requests.get(sandbox + "/_sandbox/calls", timeout=10).json()["counts"])


def reset_calls(sandbox: str) -> None:
    requests.delete(sandbox + "/_sandbox/calls", timeout=10).raise_for_status()


def sign(signing_url: str, browser: requests.Session) -> requests.Response:
    """Open the signing page, press Sign; the emulator's redirect to the `returnUrl`."""
    page = browser.get(signing_url, timeout=30)
    match = _SIGN_FORM_RE.search(page.text)
    if page.status_code != 200 or match is None:
        raise harness.BenchError(f"no Sign form on the signing page ({page.status_code})")
    done = browser.post(urljoin(signing_url, match.group(1)), allow_redirects=False, timeout=30)
    if done.status_code != 302:
        raise harness.BenchError(f"signing answered {done.status_code}, not a redirect")
    return done


# --- the gateway -----------------------------------------------------------------------


def _expect(resp: requests.Response, status: int, what: str) -> dict[str, t.Any]:
    if resp.status_code != status:
        raise harness.BenchError(f"{what}: {resp.status_code} {resp.text[:200]}")
    return dict(resp.json()) if resp.content and status != 303 else {}


def _wait_connect(sandbox: str, envelope_id: str, timeout: float = 15.0) -> bool:
    """Until the emulator delivered envelope-completed for this envelope with a 2xx."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in requests.get(sandbox + "/_sandbox/connect/deliveries", timeout=10).json():
            if (d["envelope_id"] == envelope_id and d["event"] == "envelope-completed"
                    and 200 <= d.get("status_code", 0) < 300):
                return True
        time.sleep(0.05)
    return False


def gateway_signer(gw: harness.Gateway, sandbox: str) -> tuple[str, bool]:
    """One signer's journey through the gateway; (final status, Connect delivered)."""
    with requests.Session() as partner, requests.Session() as browser:
        partner.headers.update(gw.auth)
        env = _expect(partner.post(gw.url + "/v1/envelopes", json=harness.CREATE_BODY, timeout=30),
                      201, "create")["envelope_id"]
        status_url = f"{gw.url}/v1/envelopes/{env}"
        view = _expect(partner.post(status_url + "/recipient-view", timeout=30,
                                    json={"return_url": harness.RETURN_URL}), 201, "recipient view")
        for _ in range(2):
            _expect(partner.get(status_url, timeout=30), 200, "status")
        relay = sign(view["url"], browser).headers["Location"]
        back = browser.get(relay, allow_redirects=False, timeout=30)
        if back.status_code != 303 or not back.headers["Location"].startswith(harness.RETURN_URL):
            raise harness.BenchError(f"return relay answered {back.status_code}")
        delivered = _wait_connect(sandbox, env)
        final = _expect(partner.get(status_url, timeout=30), 200, "status")["status"]
    return str(final), delivered


def run_gateway(ws: harness.Workspace, args: argparse.Namespace) -> Outcome:
    sandbox = harness.start_emulator(ws, unlimited=False, name="emulator-gateway", connect_retry=1)
    redis_uri = harness.workers_and_limits(ws, args.workers)
    gw = harness.prepare_gateway(ws, sandbox, redis_uri=redis_uri)
    harness.gateway_cli(gw.env, "docusign", "sandbox-connect", "--sandbox", sandbox,
                        "--listener", gw.url + "/webhooks/docusign")
    reset_calls(sandbox)
    harness.serve_gateway(ws, gw, workers=args.workers, threads=args.threads)
    out = Outcome("gateway", args.signers)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(lambda _: gateway_signer(gw, sandbox), range(args.signers)))
    out.seconds = time.perf_counter() - started
    out.calls = calls(sandbox)
    for final, delivered in results:
        out.final[final] = out.final.get(final, 0) + 1
        out.connect_ok += delivered
    return out


# --- the naive integration -------------------------------------------------------------


def naive_signer(ds: DirectDocuSign, sandbox: str) -> str:
    """One signer's journey, calling DocuSign directly with a new token before every call."""
    created = ds.call(ds.token(), "POST", "/envelopes", ds.create_body())
    if created.status_code != 201:
        raise harness.BenchError(f"naive create: {created.status_code} {created.text[:200]}")
    env = created.json()["envelopeId"]
    client_user_id = ds.last_client_user_id
    ds.call(ds.token(), "PUT", f"/envelopes/{env}", {"status": "sent"})
    view = ds.call(ds.token(), "POST", f"/envelopes/{env}/views/recipient", {
        "returnUrl": harness.RETURN_URL, "authenticationMethod": "None",
        "email": "ada@example.com", "userName": "Ada Lovelace", "clientUserId": client_user_id,
    })
    if view.status_code != 201:
        raise harness.BenchError(f"naive recipient view: {view.status_code} {view.text[:200]}")
    for _ in range(2):
        ds.call(ds.token(), "GET", f"/envelopes/{env}")
    with requests.Session() as browser:
        sign(view.json()["url"], browser)
    final = ds.call(ds.token(), "GET", f"/envelopes/{env}")
    return str(final.json().get("status", "refused")) if final.ok else "unknown (poll refused)"


def run_naive(ws: harness.Workspace, args: argparse.Namespace) -> Outcome:
    sandbox = harness.start_emulator(ws, unlimited=False, name="emulator-naive")
    ds = DirectDocuSign(sandbox)
    reset_calls(sandbox)
    out = Outcome("naive direct client", args.signers)
    started = time.perf_counter()
    try:
        finals = [naive_signer(ds, sandbox) for _ in range(args.signers)]
    finally:
        ds.close()
    out.seconds = time.perf_counter() - started
    out.calls = calls(sandbox)
    out.refused = ds.failures
    for final in finals:
        out.final[final] = out.final.get(final, 0) + 1
    return out


# --- report ----------------------------------------------------------------------------


def _report(outcomes: list[Outcome], args: argparse.Namespace) -> Report:
    report = Report(f"Upstream economy ({args.signers} signers, gateway with {args.workers} worker(s), "
                    "emulator under DocuSign's limits)")
    shown = [e for e in ENDPOINTS if any(o.calls.get(e) for o in outcomes)]
    rows = []
    for o in outcomes:
        total = sum(o.calls.values())
        ops = o.signers * OPS_PER_SIGNER
        rows.append((o.client, ops, *(o.calls.get(e, 0) for e in shown), total, total / ops, o.refused,
                     ", ".join(f"{k} {v}" for k, v in sorted(o.final.items()))))
    report.add(table(["client", "partner ops", *shown, "upstream total", "per op", "refused",
                      "final status"], rows))
    gw = outcomes[0]
    report.add(f"Connect: {gw.connect_ok} of {gw.signers} envelope-completed events delivered to the "
               f"gateway and acknowledged. Run time: gateway {gw.seconds:.1f} s, "
               f"naive {outcomes[1].seconds:.1f} s (both well inside one token lifetime).")
    per_op = sum(gw.calls.values()) / (gw.signers * OPS_PER_SIGNER)
    report.check("gateway upstream calls per partner operation <= 1.05", f"{per_op:.2f}", per_op <= 1.05)
    tokens = gw.calls.get("token", 0)
    report.check(f"token requests per token lifetime per deployment ({args.workers} workers) <= 1",
                 str(tokens), tokens <= 1)
    report.check("every envelope ends completed in the gateway's record",
                 f"{gw.final.get('completed', 0)} / {gw.signers}", gw.final.get("completed", 0) == gw.signers)
    return report


def run(args: argparse.Namespace) -> Report:
    seen: list[float] = []
    with harness.workspace() as ws, harness.load_watch(seen):
        outcomes = [run_gateway(ws, args), run_naive(ws, args)]
    report = _report(outcomes, args)
    report.add(harness.load_note(seen))
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.economy", description=__doc__.splitlines()[0])
    harness.common_args(p, workers=2)
    p.add_argument("--signers", type=int, default=10, help="signer journeys per client (default 10)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="signers in flight at once through the gateway (default 4)")
    return p


def main(argv: t.Sequence[str] | None = None) -> int:
    return harness.main(run, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
