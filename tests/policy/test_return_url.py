"""`return_url_allowed`: the open-redirect guard, with attack tables and properties."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from gateway.policy import return_url_allowed

ALLOWED = ["https://members.acme.example/signed"]
HOST = "members.acme.example"


@pytest.mark.parametrize(
    "candidate",
    [
        "https://members.acme.example/signed",
        "https://members.acme.example/signed/",
        "https://members.acme.example/signed/thanks",
        "https://members.acme.example/signed/a/b-c_d.html",
        "https://members.acme.example/signed?order=778&x=%2F",
        "https://members.acme.example/signed/?",
        "https://MEMBERS.Acme.Example/signed",
        "HTTPS://members.acme.example/signed",
        "https://members.acme.example:443/signed",
        "https://members.acme.example/signed/%41bc",
    ],
)
def test_accepted(candidate: str) -> None:
    assert return_url_allowed(candidate, ALLOWED)


@pytest.mark.parametrize(
    "candidate",
    [
        # host confusion
        "https://members.acme.example.evil.example/signed",
        "https://evil.example/signed",
        "https://evilmembers.acme.example/signed",
        "https://acme.example/signed",
        "https://members.acme.example./signed",
        "https://members.acme.example@evil.example/signed",
        "https://evil.example@members.acme.example/signed",
        "https://user:pass@members.acme.example/signed",
        "https://@members.acme.example/signed",
        "https://evil.example\\@members.acme.example/signed",
        "https://members.acme.example\\@evil.example/signed",
        "https://members.acme.example%2eevil.example/signed",
        "https://members.acme.example%40evil.example/signed",
        "https://xn--mmbers-cva.acme.example/signed",
        "https://mémbers.acme.example/signed",
        "https://members.acme.example\u3002evil.example/signed",
        "https://members.acme.example:443@evil.example/signed",
        # scheme tricks and relative forms
        "https:\\\\evil.example",
        "https:\\\\members.acme.example/signed",
        "//evil.example/signed",
        "//members.acme.example/signed",
        "/signed",
        "signed",
        "https:/members.acme.example/signed",
        "https:members.acme.example/signed",
        "https:///members.acme.example/signed",
        "http://members.acme.example/signed",
        "ftp://members.acme.example/signed",
        "javascript:alert(1)",
        "javascript://members.acme.example/signed%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "JaVaScRiPt:alert(1)",
        # ports
        "https://members.acme.example:444/signed",
        "https://members.acme.example:80/signed",
        "https://members.acme.example:0443/signed",
        "https://members.acme.example:/signed",
        "https://members.acme.example:99999/signed",
        "https://members.acme.example:443:443/signed",
        # paths
        "https://members.acme.example/signedx",
        "https://members.acme.example/Signed",
        "https://members.acme.example/SIGNED",
        "https://members.acme.example/",
        "https://members.acme.example",
        "https://members.acme.example/other",
        "https://members.acme.example/signed/../admin",
        "https://members.acme.example/signed/./x",
        "https://members.acme.example/signed/..",
        "https://members.acme.example/signed/%2e%2e/admin",
        "https://members.acme.example/signed/%2E%2E/admin",
        "https://members.acme.example/signed%2f..%2fadmin",
        "https://members.acme.example/signed%2F",
        "https://members.acme.example/signed/%5c..%5cadmin",
        "https://members.acme.example/signed//evil.example",
        "https://members.acme.example/signed/%zz",
        "https://members.acme.example/signed/%",
        "https://members.acme.example/sign%65d",
        # fragments, whitespace, control and non-ASCII characters
        "https://members.acme.example/signed#frag",
        "https://members.acme.example/signed#",
        "https://members.acme.example/signed?x=1#@evil.example",
        "https://members.acme.example/sig\tned",
        "https://members.acme.example/signed\n",
        "https://members.acme.\nexample/signed",
        "\thttps://members.acme.example/signed",
        " https://members.acme.example/signed",
        "https://members.acme.example/signed ",
        "https://members.acme.example/signed\x00",
        "https://members.acme.example/signed\x7f",
        "https://members.acme.example/signed?x=\u202e",
        "https://members.acme.example/signéd",
        "https://members.acme.example/signed?next=a b",
        # not strings or absurd
        "",
        "https://",
        "https://members.acme.example/signed/" + "a" * 2100,
    ],
)
def test_rejected(candidate: str) -> None:
    assert not return_url_allowed(candidate, ALLOWED)


@pytest.mark.parametrize("candidate", [None, 42, b"https://members.acme.example/signed"])
def test_non_strings_rejected(candidate: object) -> None:
    assert not return_url_allowed(candidate, ALLOWED)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("allowed", "candidate", "expected"),
    [
        (["https://a.example"], "https://a.example/anything?q=1", True),
        (["https://a.example/"], "https://a.example/anything", True),
        (["https://a.example/"], "https://a.example", True),
        (["https://a.example/signed/"], "https://a.example/signed/x", True),
        (["https://a.example/signed/"], "https://a.example/signed", False),
        (["https://a.example:8443/s"], "https://a.example:8443/s", True),
        (["https://a.example:8443/s"], "https://a.example/s", False),
        (["https://a.example:443/s"], "https://a.example/s", True),
        (["http://127.0.0.1:8070/signed"], "http://127.0.0.1:8070/signed?e=1", True),
        (["http://127.0.0.1:8070/signed"], "http://127.1:8070/signed", False),
        (["http://127.0.0.1:8070/signed"], "http://2130706433:8070/signed", False),
        (["http://127.0.0.1:8070/signed"], "http://0x7f.0.0.1:8070/signed", False),
        (["http://127.0.0.1:8070/signed"], "https://127.0.0.1:8070/signed", False),
        (["http://127.0.0.1/signed"], "http://127.0.0.1:80/signed", True),
        (["http://[::1]:8070/signed"], "http://[0:0:0:0:0:0:0:1]:8070/signed", True),
        (["http://[::1]:8070/signed"], "http://[::1%25eth0]:8070/signed", False),
        (["http://localhost:8070/"], "http://LOCALHOST:8070/x", True),
        (["https://a.example/x", "https://b.example/y"], "https://b.example/y/z", True),
        (["https://a.example/x", "https://b.example/y"], "https://b.example/x", False),
        (["not a url", "https://a.example/x"], "https://a.example/x", True),
        ([], "https://a.example/x", False),
        (["https://a.example/x/../y"], "https://a.example/y", False),
    ],
)
def test_against_allowed_list(allowed: list[str], candidate: str, expected: bool) -> None:
    assert return_url_allowed(candidate, allowed) is expected


# --- properties

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_hosts = (
    st.lists(_label, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda host: not host.split(".")[-1].isdigit())
)
_segment = st.from_regex(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,15}", fullmatch=True).filter(
    lambda segment: segment not in (".", "..")
)
_suffix = st.lists(_segment, max_size=4).map(lambda parts: "".join(f"/{p}" for p in parts))
_query = st.one_of(
    st.just(""),
    st.from_regex(r"\?[A-Za-z0-9=&_.~-]{0,30}", fullmatch=True),
)


@given(
    host=st.one_of(
        _hosts,
        _hosts.map(lambda h: f"{HOST}.{h}"),
        _hosts.map(lambda h: f"{h}.{HOST}"),
        _hosts.map(lambda h: f"{h}{HOST}"),
    ),
    suffix=_suffix,
    query=_query,
)
@example(host="evil.example", suffix="", query="")
def test_other_hosts_are_rejected(host: str, suffix: str, query: str) -> None:
    """Whatever the path, a URL whose host is not the allowed host is refused."""
    candidate = f"https://{host}/signed{suffix}{query}"
    assert return_url_allowed(candidate, ALLOWED) is (host == HOST)


@given(suffix=_suffix, trailing=st.booleans(), query=_query, port=st.sampled_from(["", ":443"]))
def test_allowed_prefix_with_safe_suffix_is_accepted(
    suffix: str, trailing: bool, query: str, port: str
) -> None:
    candidate = f"https://{HOST}{port}/signed{suffix}{'/' if trailing else ''}{query}"
    assert return_url_allowed(candidate, ALLOWED)


@given(extra=st.from_regex(r"[A-Za-z0-9_.~-]{1,10}", fullmatch=True))
def test_path_prefix_only_at_a_slash_boundary(extra: str) -> None:
    assert not return_url_allowed(f"https://{HOST}/signed{extra}", ALLOWED)


_noise = st.text(
    alphabet=st.sampled_from(list("/\\@:.%#?&=;, \t\n\r\x00\x7fé\u3002aZ09-_~[]2eEfF5cC")),
    max_size=6,
)


@settings(max_examples=500)
@given(position=st.integers(min_value=0, max_value=60), noise=_noise)
def test_mutated_urls_never_escape_the_allowed_origin(position: int, noise: str) -> None:
    """Splice arbitrary junk anywhere into an allowed URL: if the result is still accepted, a
    standard parser must agree it points inside the allowed origin and path."""
    base = f"https://{HOST}/signed/x?y=1"
    candidate = base[:position] + noise + base[position:]
    if not return_url_allowed(candidate, ALLOWED):
        return
    parts = urlsplit(candidate)
    assert parts.scheme == "https"
    assert parts.hostname == HOST
    assert parts.port in (None, 443)
    assert parts.username is None and parts.fragment == ""
    assert parts.path == "/signed" or parts.path.startswith("/signed/")
    assert "/../" not in parts.path + "/" and "/./" not in parts.path + "/"


@given(candidate=st.text(max_size=80))
def test_arbitrary_text_never_raises(candidate: str) -> None:
    result = return_url_allowed(candidate, ALLOWED)
    if result:
        assert urlsplit(candidate).hostname == HOST
