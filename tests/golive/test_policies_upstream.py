"""`gateway policies check --upstream`: every policy template against the account's templates."""

from __future__ import annotations

import typing as t
from pathlib import Path

import requests
from click.testing import CliRunner

from tests.golive.helpers import lines
from tests.golive.helpers import run

SEEDED_ID = "7a1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1b01"
UNKNOWN_ID = "7a1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1bff"

POLICY = """
partner = "acme"
display_name = "Acme"
operations = ["create_draft", "recipient_view", "status"]
rate_limit = "10/minute"
return_urls = ["https://acme.example/done"]
frame_ancestors = ["https://acme.example"]

[templates.lease]
template_id = "{template_id}"
role = "{role}"
email_subject = "Lease"
{fields}
"""


def write_policy(tmp_path: Path, *, template_id: str, role: str = "Tenant",
                 fields: t.Sequence[str] = ("unit",)) -> None:
    text = "".join(f"[templates.lease.fields.{name}]\nrequired = true\n" for name in fields)
    (tmp_path / "policies" / "acme.toml").write_text(
        POLICY.format(template_id=template_id, role=role, fields=text))


def seed_lease(sandbox: t.Any, tabs: list[t.Any]) -> None:
    resp = requests.post(sandbox.url + "/_sandbox/templates", timeout=5, json={
        "templateId": SEEDED_ID, "name": "Lease",
        "recipients": [
            {"roleName": "Tenant", "routingOrder": 1, "textTabs": tabs},
            {"roleName": "Landlord", "routingOrder": 2, "name": "Lin Landlord",
             "email": "lin@landlord.example"},
        ]})
    assert resp.status_code == 201, resp.text


def test_the_example_policy_passes_and_shows_the_workflow(configured: CliRunner) -> None:
    out = lines(run(configured, "policies", "check", "--upstream"))
    assert out == [
        "ok      example/membership: template 'Membership agreement' found; Member is a signer "
        "(routing 1); member_number, plan, start_date are text tabs of Member",
        "note    example/membership: then: Countersigner (signer, routing 2: Grace Hopper), "
        "Legal (carbon copy, routing 3: Owner Legal Team)",
        "ok      example/nda: template 'Mutual NDA' found; Signer is a signer (routing 1); "
        "company, title are text tabs of Signer",
    ]


def test_without_upstream_nothing_is_asked_of_docusign(configured: CliRunner, sandbox: t.Any) -> None:
    before = sandbox.calls()
    assert lines(run(configured, "policies", "check")) == ["ok      example"]
    assert sandbox.calls() == before


def test_unknown_template_id(configured: CliRunner, tmp_path: Path) -> None:
    write_policy(tmp_path, template_id=UNKNOWN_ID)
    result = run(configured, "policies", "check", "--upstream", code=1)
    errors = [line for line in lines(result) if line.startswith("error")]
    assert errors == [f"error   acme/lease: template {UNKNOWN_ID} does not exist in this account, "
                      "or is not shared with the system sender (TEMPLATE_ID_INVALID)"]
    assert lines(result)[-1] == "1 error(s)"


def test_misspelt_role_suggests_the_near_miss(configured: CliRunner, sandbox: t.Any,
                                              tmp_path: Path) -> None:
    seed_lease(sandbox, [{"tabLabel": "unit", "required": True}])
    write_policy(tmp_path, template_id=SEEDED_ID, role="Tennant")
    errors = [line for line in lines(run(configured, "policies", "check", "--upstream", code=1))
              if line.startswith("error ")]
    assert errors == ["error   acme/lease: role 'Tennant' is not a signer role of template 'Lease' "
                      "(did you mean 'Tenant'?); its signer roles: Tenant, Landlord"]


def test_misspelt_tab_label_suggests_the_near_miss(configured: CliRunner, sandbox: t.Any,
                                                   tmp_path: Path) -> None:
    seed_lease(sandbox, [{"tabLabel": "unit_number", "required": False}])
    write_policy(tmp_path, template_id=SEEDED_ID, fields=["unit_numbr"])
    errors = [line for line in lines(run(configured, "policies", "check", "--upstream", code=1))
              if line.startswith("error ")]
    assert errors == ["error   acme/lease: field 'unit_numbr' is not a text tab of Tenant (did you "
                      "mean 'unit_number'?); DocuSign would ignore its value "
                      "(docs/docusign-facts.md §18)"]


def test_required_tab_no_field_fills(configured: CliRunner, sandbox: t.Any, tmp_path: Path) -> None:
    seed_lease(sandbox, [{"tabLabel": "unit", "required": True},
                         {"tabLabel": "deposit", "tooltip": "Deposit", "required": True},
                         {"tabLabel": "pets", "required": False}])
    write_policy(tmp_path, template_id=SEEDED_ID, fields=["unit"])
    out = lines(run(configured, "policies", "check", "--upstream", code=1))
    errors = [line for line in out if line.startswith("error ")]
    assert errors == ["error   acme/lease: the required text tab 'deposit' ('Deposit') of Tenant is "
                      "filled by no policy field: add a field 'deposit' to the policy, or make "
                      "the tab optional in the template"]
    # the routing is shown even when the template has an error
    assert "note    acme/lease: then: Landlord (signer, routing 2: Lin Landlord)" in out


def test_emulator_down_is_one_line(configured: CliRunner, sandbox: t.Any) -> None:
    from tests.embedded import free_port
    from tests.golive.helpers import change_settings

    url = f"http://127.0.0.1:{free_port()}"
    change_settings(oauth_base_url=url)
    out = lines(run(configured, "policies", "check", "--upstream", code=1))
    assert out == [f"error: JWT grant: the emulator at {url} does not answer; it may have "
                   f"restarted: run `gateway docusign configure --sandbox {url}` again"]
