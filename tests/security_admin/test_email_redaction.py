"""Issue 16 #12: every form of email address is redacted in logs (property-based, with hypothesis)."""

from __future__ import annotations

import logging
import string

import pytest
from hypothesis import assume
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from gateway.observability import logging as obs_logging
from gateway.observability.logging import RedactingFilter
from gateway.observability.logging import redact

#: what a quoted local part may hold besides the quote and backslash (RFC 5322 qtext and space)
QTEXT = "".join(c for c in string.printable if c not in '"\\\r\n\t\x0b\x0c')
LETTERS = st.characters(categories=("L",))  # every script's letters (IDN labels, RFC 6531)


def _labels(min_labels: int) -> st.SearchStrategy[str]:
    label = st.text(LETTERS, min_size=1, max_size=12)
    return st.lists(label, min_size=min_labels, max_size=3).map(".".join)


def _ascii_domain() -> st.SearchStrategy[str]:
    return st.emails().map(lambda addr: addr.rsplit("@", 1)[1])


LOCALS = st.one_of(
    # RFC 5322 dot-atoms; `= & ? /` delimit (see _LOCAL_CHAR), tested on their own below
    st.emails().map(lambda addr: addr.rsplit("@", 1)[0]).filter(lambda s: not set(s) & set("=&?/")),
    st.text(QTEXT, min_size=1, max_size=30).map(lambda s: f'"{s}"'),  # quoted local parts
    st.text(LETTERS, min_size=1, max_size=20),                       # internationalised
)
DOMAINS = st.one_of(
    _ascii_domain(),
    _labels(2),                                                       # IDN domains
    _labels(1),                                                       # bare hosts: localhost
    st.ip_addresses().map(lambda ip: f"[{'IPv6:' if ip.version == 6 else ''}{ip}]"),
)


def _untouched_by_other_patterns(text: str) -> bool:
    return all(pattern.search(text) is None for pattern, _ in obs_logging._SECRETS)


@settings(max_examples=400)
@given(local=LOCALS, domain=DOMAINS, sep=st.sampled_from(["@", "%40"]))
def test_every_address_form_loses_its_local_part(local: str, domain: str, sep: str) -> None:
    text = f"mail to {local}{sep}{domain} now"
    assume(_untouched_by_other_patterns(text))
    assert redact(text) == f"mail to {local[0]}***{sep}{domain} now"


@settings(max_examples=200)
@given(local=LOCALS, domain=DOMAINS)
@example(local='"@0"', domain="[0.0.0.0]")  # once taken for `""`: the string's own quote
def test_an_address_inside_json_or_quotes_is_redacted(local: str, domain: str) -> None:
    assume("*" not in local)  # the mask itself is made of stars
    escaped = local.replace('"', '\\"')
    text = f'{{"signer": {{"email": "{escaped}@{domain}"}}}}'
    assume(_untouched_by_other_patterns(text))
    out = redact(text)
    assert f"{escaped}@" not in out and f"***@{domain}" in out


@pytest.mark.parametrize(("address", "shown"), [
    ('"john doe"@example.com', '"***@example.com'),
    ('"a@b"@example.com', '"***@example.com'),
    ("José.Müller@bücher.de", "J***@bücher.de"),
    ("用户@例子.广告", "用***@例子.广告"),
    ("root@localhost", "r***@localhost"),
    ("o'brien+tag@example.org", "o***@example.org"),
    ("GET /users/ada@example.com?notify=bob%40example.org",
     "GET /users/a***@example.com?notify=b***%40example.org"),
    ("ada@[192.0.2.1]", "a***@[192.0.2.1]"),
])
def test_every_log_record_is_redacted(address: str, shown: str) -> None:
    record = logging.LogRecord("gateway.test", logging.INFO, __file__, 1, "signer %s", (address,),
                               None)
    record.signer = address
    assert RedactingFilter().filter(record)
    assert record.getMessage() == f"signer {shown}"
    assert record.signer == shown
