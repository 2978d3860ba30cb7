"""Policy files: schema validation with exact error messages, field checks, the reloading store."""

from __future__ import annotations

import logging
import os
import pathlib
import re

import pytest
from marshmallow import Schema

from gateway import policy as policies
from gateway.policy import OPERATIONS
from gateway.policy import FieldRule
from gateway.policy import Policy
from gateway.policy import PolicyError
from gateway.policy import PolicyFileInvalid
from gateway.policy import PolicyStore
from gateway.policy import load_policy

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies" / "example.toml"

ACME = """\
partner = "acme"
display_name = "Acme Members Portal"
operations = ["create_draft", "recipient_view", "status"]
rate_limit = "60/minute;1000/hour"
return_urls = ["https://members.acme.example/signed"]
frame_ancestors = ["https://members.acme.example"]
message_origins = ["https://members.acme.example"]

[templates.membership]
template_id = "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01"
role = "Member"
email_subject = "Your membership agreement"

[templates.membership.fields.member_number]
required = true
max_length = 20
pattern = "^[0-9]+$"

[templates.membership.fields.plan]
choices = ["gold", "silver"]
"""


def write(directory: pathlib.Path, text: str, name: str = "acme") -> pathlib.Path:
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def replace(old: str, new: str) -> str:
    assert old in ACME, old
    return ACME.replace(old, new, 1)


def errors_of(path: pathlib.Path) -> list[str]:
    """The error lines of loading `path`, each checked to start with the file name."""
    with pytest.raises(PolicyFileInvalid) as info:
        load_policy(path)
    assert info.value.path == str(path)
    lines = str(info.value).split("\n")
    assert lines == [str(error) for error in info.value.errors]
    assert all(line.startswith(f"{path}: ") for line in lines)
    return [line.removeprefix(f"{path}: ") for line in lines]


# --- the example partner and a valid file


def test_example_policy_loads() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.partner == "example"
    assert policy.display_name == "Example Partner Site"
    assert policy.operations == OPERATIONS
    assert policy.rate_limit == "120/minute;2000/hour"
    assert policy.return_urls == ("http://127.0.0.1:8070/signed",)
    assert policy.frame_ancestors == ("http://127.0.0.1:8070",)
    assert policy.message_origins == ()
    assert policy.source == str(EXAMPLE)
    membership, nda = policy.templates["membership"], policy.templates["nda"]
    assert membership.template_id == "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01"
    assert (membership.role, membership.email_subject) == ("Member", "Your membership agreement")
    assert list(membership.fields) == ["member_number", "plan", "start_date"]
    number, plan, start = membership.fields.values()
    assert (number.required, number.max_length, number.pattern) == (
        True,
        20,
        re.compile("^[0-9]+$"),
    )
    assert (plan.required, plan.choices) == (True, ("basic", "plus", "family"))
    assert start.pattern is not None
    assert (start.required, start.pattern.pattern) == (False, r"^\d{4}-\d{2}-\d{2}$")
    assert nda.template_id == "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a02"
    assert (nda.role, nda.email_subject) == ("Signer", "Mutual NDA")
    assert {n: (r.required, r.max_length) for n, r in nda.fields.items()} == {
        "company": (True, 100),
        "title": (False, 60),
    }
    assert policy.return_url_allowed("http://127.0.0.1:8070/signed?x=1")
    assert not policy.return_url_allowed("http://127.0.0.1:8071/signed")


def test_defaults_and_immutability(tmp_path: pathlib.Path) -> None:
    text = replace('rate_limit = "60/minute;1000/hour"\n', "")
    text = text.replace('["create_draft", "recipient_view", "status"]', '["status"]')
    for line in ("return_urls", "frame_ancestors", "message_origins"):
        text = re.sub(rf"^{line} = .*\n", "", text, flags=re.M)
    policy = load_policy(write(tmp_path, text))
    assert policy.rate_limit == "60/minute"
    assert (policy.return_urls, policy.frame_ancestors, policy.message_origins) == ((), (), ())
    assert policy.allows("status") and not policy.allows("create_draft")
    assert not policy.allows("delete")
    plan = policy.templates["membership"].fields["plan"]
    assert plan == FieldRule("plan", False, 255, None, ("gold", "silver"), None)
    with pytest.raises(TypeError):
        policy.templates["other"] = policy.templates["membership"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        policy.partner = "evil"  # type: ignore[misc]


def test_public_view_hides_upstream_ids(tmp_path: pathlib.Path) -> None:
    template = load_policy(write(tmp_path, ACME)).templates["membership"]
    public = template.public()
    assert public == {
        "alias": "membership",
        "fields": {
            "member_number": {
                "required": True,
                "max_length": 20,
                "pattern": "^[0-9]+$",
                "choices": None,
                "description": None,
            },
            "plan": {
                "required": False,
                "max_length": 255,
                "pattern": None,
                "choices": ["gold", "silver"],
                "description": None,
            },
        },
    }
    assert template.template_id not in repr(public) and "Member" not in repr(public)


# --- every rule, with the exact error (file + dotted key + message)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('colour = "red"\n' + ACME, ["colour: unknown key"], id="unknown-top-key"),
        pytest.param(
            replace("max_length = 20\n", "max_length = 20\nmaxlength = 20\n"),
            ["templates.membership.fields.member_number.maxlength: unknown key"],
            id="unknown-field-key",
        ),
        pytest.param(
            replace('role = "Member"\n', 'role = "Member"\ntemplate_role = "x"\n'),
            ["templates.membership.template_role: unknown key"],
            id="unknown-template-key",
        ),
        pytest.param(
            replace('pattern = "^[0-9]+$"', 'pattern = "^[0-9+$"'),
            [
                "templates.membership.fields.member_number.pattern: "
                "not a valid regular expression (unterminated character set)"
            ],
            id="bad-regex",
        ),
        pytest.param(
            replace('pattern = "^[0-9]+$"', f'pattern = "{"a" * 501}"'),
            ["templates.membership.fields.member_number.pattern: must be 1 to 500 characters"],
            id="regex-too-long",
        ),
        pytest.param(
            replace("60/minute;1000/hour", "lots/minute"),
            ["rate_limit: not a valid rate limit (expected e.g. '60/minute;1000/hour')"],
            id="bad-rate-limit",
        ),
        pytest.param(
            replace("60/minute;1000/hour", "0/minute"),
            ["rate_limit: every limit must allow at least 1 request"],
            id="zero-rate-limit",
        ),
        pytest.param(
            replace("https://members.acme.example/signed", "http://members.acme.example/signed"),
            ["return_urls[0]: must use https (http is only allowed for loopback hosts)"],
            id="http-return-url",
        ),
        pytest.param(
            replace("https://members.acme.example/signed", "https://u:p@acme.example/signed"),
            ["return_urls[0]: must not contain user info (@)"],
            id="return-url-userinfo",
        ),
        pytest.param(
            replace("https://members.acme.example/signed", "https://acme.example/signed#top"),
            ["return_urls[0]: must not contain a fragment (#)"],
            id="return-url-fragment",
        ),
        pytest.param(
            replace("https://members.acme.example/signed", "https://acme.example/signed?a=1"),
            ["return_urls[0]: must not contain a query string"],
            id="return-url-query",
        ),
        pytest.param(
            replace("https://members.acme.example/signed", "https:///signed"),
            ["return_urls[0]: host is missing or not valid"],
            id="return-url-no-host",
        ),
        pytest.param(
            replace("https://members.acme.example/signed", "https://acme.example./signed"),
            ["return_urls[0]: host must not end with a dot"],
            id="return-url-trailing-dot",
        ),
        pytest.param(
            replace("https://members.acme.example/signed", "https://acme.example/a/../b"),
            ["return_urls[0]: path must not contain '.' or '..' segments"],
            id="return-url-dot-segment",
        ),
        pytest.param(
            replace("https://members.acme.example/signed", "ftp://acme.example/signed"),
            ["return_urls[0]: must be an absolute http(s) URL"],
            id="return-url-scheme",
        ),
        pytest.param(
            replace(
                'frame_ancestors = ["https://members.acme.example"]',
                'frame_ancestors = ["https://members.acme.example/embed"]',
            ),
            [
                "frame_ancestors[0]: must be an origin (scheme://host[:port]) "
                "without a path or query"
            ],
            id="frame-ancestor-with-path",
        ),
        pytest.param(
            replace(
                'message_origins = ["https://members.acme.example"]',
                'message_origins = ["http://acme.example"]',
            ),
            ["message_origins[0]: must use https (http is only allowed for loopback hosts)"],
            id="http-message-origin",
        ),
        pytest.param(
            replace('"status"]', '"status", "delete_envelope"]'),
            ["operations[3]: must be one of: create_draft, recipient_view, status"],
            id="unknown-operation",
        ),
        pytest.param(
            replace('"status"]', '"status", "status"]'),
            ["operations: duplicate entries: status"],
            id="duplicate-operation",
        ),
        pytest.param(
            replace('["create_draft", "recipient_view", "status"]', "[]"),
            ["operations: must have at least 1 entries"],
            id="no-operations",
        ),
        pytest.param(
            replace('return_urls = ["https://members.acme.example/signed"]\n', ""),
            ["return_urls: required (at least 1 entry) when operations include recipient_view"],
            id="recipient-view-without-return-urls",
        ),
        pytest.param(
            replace('return_urls = ["https://members.acme.example/signed"]', "return_urls = []"),
            ["return_urls: required (at least 1 entry) when operations include recipient_view"],
            id="recipient-view-with-empty-return-urls",
        ),
        pytest.param(
            replace("5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01", "membership-template"),
            ["templates.membership.template_id: not a GUID (8-4-4-4-12 hex digits)"],
            id="non-guid-template-id",
        ),
        pytest.param(
            replace("2f6b8d4c1a01", "2f6b8d4c1a01x"),
            ["templates.membership.template_id: not a GUID (8-4-4-4-12 hex digits)"],
            id="guid-with-trailing-junk",
        ),
        pytest.param(
            replace('role = "Member"\n', ""),
            ["templates.membership.role: required key is missing"],
            id="missing-role",
        ),
        pytest.param(
            replace('"Your membership agreement"', '"' + "x" * 101 + '"'),
            ["templates.membership.email_subject: must be 1 to 100 characters"],
            id="email-subject-too-long",
        ),
        pytest.param(
            replace("[templates.membership]", '[templates."Member Ship"]').replace(
                "templates.membership.", 'templates."Member Ship".'
            ),
            [
                'templates."Member Ship": '
                "not a valid template alias (must match ^[a-z0-9][a-z0-9_-]{0,62}$)"
            ],
            id="bad-template-alias",
        ),
        pytest.param(
            replace("fields.plan]", 'fields."plan name"]'),
            [
                'templates.membership.fields."plan name": '
                "not a valid field name (must match ^[A-Za-z0-9_.-]{1,100}$)"
            ],
            id="bad-field-name",
        ),
        pytest.param(
            replace("required = true", 'required = "yes"'),
            ["templates.membership.fields.member_number.required: must be true or false"],
            id="required-not-boolean",
        ),
        pytest.param(
            replace("max_length = 20", "max_length = 20.5"),
            ["templates.membership.fields.member_number.max_length: must be an integer"],
            id="max-length-float",
        ),
        pytest.param(
            replace("max_length = 20", "max_length = 4001"),
            ["templates.membership.fields.member_number.max_length: must be between 1 and 4000"],
            id="max-length-too-large",
        ),
        pytest.param(
            replace('choices = ["gold", "silver"]', "choices = []"),
            ["templates.membership.fields.plan.choices: must have 1 to 100 entries"],
            id="empty-choices",
        ),
        pytest.param(
            replace('choices = ["gold", "silver"]', 'choices = ["gold", "silver"]\nmax_length = 5'),
            ["templates.membership.fields.plan.choices[1]: longer than max_length (5)"],
            id="choice-too-long",
        ),
        pytest.param(
            replace(
                'choices = ["gold", "silver"]', 'choices = ["gold", "silver"]\npattern = "g.+"'
            ),
            ["templates.membership.fields.plan.choices[1]: does not match pattern"],
            id="choice-breaks-pattern",
        ),
        pytest.param(
            replace('choices = ["gold", "silver"]', 'choices = ["gold", 7]'),
            ["templates.membership.fields.plan.choices[1]: must be a string"],
            id="choice-not-string",
        ),
        pytest.param(
            ACME.split("[templates.membership]")[0] + "templates = {}\n",
            ["templates: must have 1 to 100 templates"],
            id="no-templates",
        ),
        pytest.param(
            replace('display_name = "Acme Members Portal"', "display_name = 42"),
            ["display_name: must be a string"],
            id="display-name-not-string",
        ),
        pytest.param(
            replace(
                'return_urls = ["https://members.acme.example/signed"]',
                'return_urls = "https://members.acme.example/signed"',
            ),
            ["return_urls: must be an array"],
            id="return-urls-not-array",
        ),
        pytest.param(
            replace('partner = "acme"', 'partner = "other"'),
            ["partner: must equal the file name ('acme')"],
            id="partner-not-file-stem",
        ),
        pytest.param(
            replace('partner = "acme"', 'partner = "Acme"'),
            ["partner: not a valid partner name (must match ^[a-z0-9][a-z0-9_-]{0,62}$)"],
            id="partner-bad-name",
        ),
        pytest.param(
            replace('role = "Member"', "role = Member"),
            ["invalid TOML at line 11, column 8: invalid value"],
            id="toml-syntax-error",
        ),
        pytest.param(
            'partner = "acme"\n' + ACME,
            ["invalid TOML at line 2, column 17: cannot overwrite a value"],
            id="toml-duplicate-key",
        ),
        pytest.param(
            "",
            [
                "partner: required key is missing",
                "display_name: required key is missing",
                "operations: required key is missing",
                "templates: required key is missing",
            ],
            id="empty-file",
        ),
    ],
)
def test_invalid_policy_names_file_and_key(
    tmp_path: pathlib.Path, text: str, expected: list[str]
) -> None:
    assert errors_of(write(tmp_path, text)) == expected


def test_error_string_format(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, replace('pattern = "^[0-9]+$"', 'pattern = "^[0-9+$"'))
    with pytest.raises(PolicyFileInvalid) as info:
        load_policy(path)
    assert str(info.value) == (
        f"{path}: templates.membership.fields.member_number.pattern: "
        "not a valid regular expression (unterminated character set)"
    )
    [error] = info.value.errors
    assert isinstance(error, PolicyError)
    assert error.path == str(path)
    assert error.key == "templates.membership.fields.member_number.pattern"


def test_every_error_is_reported_at_once(tmp_path: pathlib.Path) -> None:
    text = replace("60/minute;1000/hour", "often").replace("max_length = 20", "max_length = 0")
    assert errors_of(write(tmp_path, text)) == [
        "rate_limit: not a valid rate limit (expected e.g. '60/minute;1000/hour')",
        "templates.membership.fields.member_number.max_length: must be between 1 and 4000",
    ]


def test_unreadable_file(tmp_path: pathlib.Path) -> None:
    assert errors_of(tmp_path / "ghost.toml") == ["cannot read file (No such file or directory)"]
    (tmp_path / "bin.toml").write_bytes(b'partner = "\xff"\n')
    assert errors_of(tmp_path / "bin.toml") == ["not valid UTF-8"]


# --- check_fields


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"member_number": "12345"}, {}),
        ({"member_number": "12345", "plan": "gold"}, {}),
        ({"member_number": "12345", "plan": ""}, {}),
        ({}, {"member_number": ["is required"]}),
        ({"member_number": ""}, {"member_number": ["is required"]}),
        ({"member_number": "12345", "colour": "red"}, {"colour": ["unknown field"]}),
        ({"member_number": 12345}, {"member_number": ["must be a string"]}),
        ({"member_number": None}, {"member_number": ["must be a string"]}),
        ({"member_number": ["1"]}, {"member_number": ["must be a string"]}),
        ({"member_number": "1" * 21}, {"member_number": ["must be at most 20 characters"]}),
        ({"member_number": "12a45"}, {"member_number": ["does not match the required pattern"]}),
        ({"member_number": "123\n"}, {"member_number": ["does not match the required pattern"]}),
        (
            {"member_number": "1", "plan": "platinum"},
            {"plan": ["must be one of: gold, silver"]},
        ),
        (
            {"plan": "Gold", "x": "y"},
            {
                "x": ["unknown field"],
                "member_number": ["is required"],
                "plan": ["must be one of: gold, silver"],
            },
        ),
    ],
)
def test_check_fields(tmp_path: pathlib.Path, values: dict, expected: dict) -> None:
    template = load_policy(write(tmp_path, ACME)).templates["membership"]
    errors = template.check_fields(values)
    assert errors == expected
    for name, messages in errors.items():
        value = values.get(name)
        if isinstance(value, str) and value:
            assert all(value not in message for message in messages), "value echoed"


# --- the store: hot reload, fail closed


def bump(path: pathlib.Path) -> None:
    """Make sure the change is visible even on file systems with coarse timestamps."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_store_reloads_changed_file(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, ACME)
    store = PolicyStore(tmp_path)
    first = store.get("acme")
    assert isinstance(first, Policy) and first.display_name == "Acme Members Portal"
    assert store.get("acme") is first, "unchanged file must not be reloaded"
    write(tmp_path, replace("Acme Members Portal", "Acme Portal"))
    bump(path)
    second = store.get("acme")
    assert second is not None and second.display_name == "Acme Portal"
    assert store.get("acme") is second


def test_store_fails_closed_on_invalid_file_and_logs_once(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, ACME)
    store = PolicyStore(tmp_path)
    assert store.get("acme") is not None
    write(tmp_path, replace('pattern = "^[0-9]+$"', 'pattern = "("'))
    bump(path)
    with caplog.at_level(logging.INFO, logger="gateway.policy.store"):
        assert store.get("acme") is None
        assert store.get("acme") is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "templates.membership.fields.member_number.pattern" in errors[0].getMessage()
    write(tmp_path, ACME)
    bump(path)
    assert store.get("acme") is not None


def test_store_missing_and_new_files(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = PolicyStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="gateway.policy.store"):
        assert store.get("acme") is None
        assert store.get("acme") is None
    assert len(caplog.records) == 1
    write(tmp_path, ACME)
    assert store.get("acme") is not None
    (tmp_path / "acme.toml").unlink()
    assert store.get("acme") is None


@pytest.mark.parametrize(
    "partner", ["../acme", "acme/../acme", "ACME", "", ".acme", "acme.toml", "a" * 64, "acme\x00"]
)
def test_store_refuses_names_that_are_not_partner_names(
    tmp_path: pathlib.Path, partner: str
) -> None:
    write(tmp_path, ACME)
    assert PolicyStore(tmp_path).get(partner) is None


def test_store_refuses_file_whose_partner_is_someone_else(tmp_path: pathlib.Path) -> None:
    write(tmp_path, ACME, name="mallory")
    assert PolicyStore(tmp_path).get("mallory") is None


def test_store_check_all_and_names(tmp_path: pathlib.Path) -> None:
    write(tmp_path, ACME)
    write(tmp_path, replace('partner = "acme"', 'partner = "beta"'), name="beta")
    write(tmp_path, "partner = ", name="broken")
    (tmp_path / "README.md").write_text("not a policy")
    store = PolicyStore(tmp_path)
    valid, invalid = store.check_all()
    assert sorted(valid) == ["acme", "beta"]
    assert [exc.path for exc in invalid] == [str(tmp_path / "broken.toml")]
    assert store.names() == ["acme", "beta", "broken"]
    missing = PolicyStore(tmp_path / "nowhere")
    assert missing.names() == []
    assert missing.check_all()[0] == {}
    assert len(missing.check_all()[1]) == 1


def test_repository_policies_are_all_valid() -> None:
    valid, invalid = PolicyStore(REPO / "policies").check_all()
    assert invalid == []
    assert "example" in valid


# --- the schema documents itself


SCHEMAS = [policies.PolicySchema, policies.TemplateSchema, policies.FieldSchema]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_every_schema_key_is_described_and_documented(schema: type[Schema]) -> None:
    readme = (REPO / "policies" / "README.md").read_text(encoding="utf-8")
    for name, field in schema().fields.items():
        key = field.data_key or name
        assert field.metadata.get("description"), f"{schema.__name__}.{key} has no description"
        assert f"`{key}`" in readme, f"policies/README.md does not document {key}"
