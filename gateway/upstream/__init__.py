"""The one package that talks to DocuSign: JWT Grant, userinfo and the eSignature REST calls.

Modules, from the bottom up: `settings` (who the system sender is, stored and cached),
`sandbox_setup` (wiring to the emulator), `errors` (DocuSign's answers as gateway errors),
`redaction` (ids out of urllib3's log), `transport` (timeouts, retries), `auth` (JWT
Grant, userinfo), `fleet_token` (the token shared through the store), `credentials`
(the process's token and account), `budget` (the account's hourly share) and `client`.
"""

from gateway.upstream.client import DocuSignClient
from gateway.upstream.client import get_client
from gateway.upstream.client import init_app
from gateway.upstream.sandbox_setup import configure_sandbox
from gateway.upstream.settings import DocuSignSettings
from gateway.upstream.settings import UpstreamSetupError
from gateway.upstream.settings import consent_url
from gateway.upstream.settings import load_settings
from gateway.upstream.settings import save_settings
from gateway.upstream.settings import settings_from_files
from gateway.upstream.transport import MAX_ATTEMPTS

__all__ = [
    "MAX_ATTEMPTS",
    "DocuSignClient",
    "DocuSignSettings",
    "UpstreamSetupError",
    "configure_sandbox",
    "consent_url",
    "get_client",
    "init_app",
    "load_settings",
    "save_settings",
    "settings_from_files",
]
