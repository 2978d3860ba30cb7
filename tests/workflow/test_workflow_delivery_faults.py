"""Partner-webhook delivery faults across the whole demo: emulator, gateway, example site.

tests/webhooks/ covers the sender against a bare receiver; here the receiver is the real
example site (its signature check and webhook-id deduplication), the events come from
real signing (Connect from the emulator), and the owner acts through the console.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import requests

from gateway.cli.demo_stack import DemoStack
from tests.embedded import wait_for
from tests.workflow.conftest import HookRecorder
from tests.workflow.conftest import Member
from tests.workflow.conftest import countersigner
from tests.workflow.conftest import outbox


def all_delivered(stack: DemoStack, count: int) -> bool:
    events = outbox(stack)
    return len(events) == count and all(e["state"] == "delivered" for e in events)


def test_sender_runs_from_the_start(stack: DemoStack) -> None:
    assert stack.gateway_app is not None
    stop = stack.gateway_app.extensions["webhook_sender_stop"]  # before any request
    assert not stop.is_set()
    thread = stack._sender
    stack.stop()
    assert stop.is_set() and thread is not None and not thread.is_alive()


def test_site_down_for_a_while_then_back_gets_every_event_once(stack: DemoStack,
                                                               recorder: HookRecorder) -> None:
    member = Member(stack)
    kept, refused = member.sign(), member.sign()
    wait_for(lambda: all_delivered(stack, 2), timeout=20)  # the two signer_completed events

    stack.servers["example site"].stop()  # the partner's site is down
    countersigner(stack, kept, "sign")
    countersigner(stack, refused, "decline")

    def retried() -> bool:
        late = outbox(stack)[2:]
        return len(late) == 2 and all(e["attempts"] >= 2 and e["state"] == "pending" for e in late)

    wait_for(retried, timeout=30)
    assert {e["last_result"] for e in outbox(stack)[2:]} == {"connection error"}

    stack.servers["example site"].start()  # back, on the same port
    wait_for(lambda: all_delivered(stack, 4), timeout=30)

    events = outbox(stack)
    assert [e["type"] for e in events] == ["envelope.signer_completed"] * 2 + [
        "envelope.completed", "envelope.declined"]
    assert sorted(recorder.applied()) == sorted(e["event_id"] for e in events)
    assert len(set(recorder.ids())) == len(recorder.ids())  # nothing arrived twice
    assert (member.known(kept)["status"], member.known(kept)["source"]) == ("completed", "webhook")
    assert (member.known(refused)["status"], member.known(refused)["source"]) == ("declined",
                                                                                  "webhook")
    print(f"\ndelivery: events={len(events)} posts={len(recorder.seen)} "
          f"retried={sum(e['attempts'] - 1 for e in events)} lost=0")


def test_answer_lost_in_a_timeout_is_sent_again_and_applied_once(stack: DemoStack,
                                                                 recorder: HookRecorder) -> None:
    member = Member(stack)
    envelope_id = member.sign()
    wait_for(lambda: all_delivered(stack, 1), timeout=20)
    # the site applies envelope.completed, then answers after the gateway's 1 s timeout
    recorder.stall, recorder.stall_type, recorder.stall_count = 2.0, "envelope.completed", 1
    countersigner(stack, envelope_id)
    wait_for(lambda: all_delivered(stack, 2), timeout=30)

    completed = outbox(stack)[1]
    assert completed["attempts"] == 2  # the first attempt's answer never came in time
    arrivals = [s for s in recorder.seen if s["id"] == completed["event_id"]]
    assert [s["answer"]["duplicate"] for s in arrivals] == [False, True]
    assert recorder.applied().count(completed["event_id"]) == 1
    assert member.known(envelope_id)["status"] == "completed"


def _policy_path(stack: DemoStack) -> Path:
    assert stack.workdir is not None
    return Path(stack.workdir, "policies", "example.toml")


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    st = path.stat()  # the policy cache keys on (mtime, size, inode): make the change seen
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _console(stack: DemoStack) -> requests.Session:
    assert stack.admin is not None
    user, password = stack.admin
    owner = requests.Session()
    form = owner.get(stack.console_url + "login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]*)"', form)
    assert csrf
    done = owner.post(stack.console_url + "login", timeout=30, allow_redirects=False,
                      data={"csrf_token": csrf[1], "username": user, "password": password})
    assert done.status_code == 303, done.text
    return owner


def test_webhook_url_removed_while_pending_holds_and_replay_delivers(stack: DemoStack,
                                                                      recorder: HookRecorder) -> None:
    member = Member(stack)
    envelope_id = member.sign()
    wait_for(lambda: all_delivered(stack, 1), timeout=20)
    stack.servers["example site"].stop()
    countersigner(stack, envelope_id)
    wait_for(lambda: len(outbox(stack)) == 2 and outbox(stack)[1]["attempts"] >= 1, timeout=30)

    policy = _policy_path(stack)
    original = policy.read_text(encoding="utf-8")
    _write(policy, re.sub(r"(?m)^webhook_url\s*=.*\n", "", original))
    wait_for(lambda: outbox(stack)[1]["state"] == "held", timeout=20)
    held = outbox(stack)[1]
    assert held["last_result"] == "held: no webhook_url in policy"

    stack.servers["example site"].start()
    _write(policy, original)
    time.sleep(1.5)  # several sender batches: a held event stays held until replayed
    assert outbox(stack)[1]["state"] == "held"
    assert held["event_id"] not in recorder.ids()

    with _console(stack) as owner:
        page = owner.get(stack.console_url + "partners/example/webhooks", timeout=10).text
        assert held["event_id"] in page and "held" in page
        csrf = re.search(r'name="csrf_token" value="([^"]*)"', page)
        assert csrf
        replayed = owner.post(f"{stack.console_url}partners/example/webhooks/"
                              f"{held['event_id']}/replay", data={"csrf_token": csrf[1]},
                              allow_redirects=False, timeout=10)
        assert replayed.status_code == 303
    wait_for(lambda: all_delivered(stack, 2), timeout=20)
    assert recorder.applied().count(held["event_id"]) == 1
    assert (member.known(envelope_id)["status"], member.known(envelope_id)["source"]) == (
        "completed", "webhook")
