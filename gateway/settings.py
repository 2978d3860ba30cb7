"""Every setting of the gateway and its default, in one place, and how they are loaded.

Order: these defaults, then `instance/config.py`, then the environment (the names in
`ENV_SETTINGS`, and any `GATEWAY_<NAME>`), then a test's config. Code reads
`app.config["NAME"]` and never supplies a default of its own.
"""

from __future__ import annotations

import copy
import os
import typing as t

from flask import Flask

DEFAULTS: dict[str, t.Any] = {
    "TESTING": False,
    # where partner policy files live (one TOML file per partner)
    "POLICY_DIR": "policies",
    # "" = SQLite file in the instance folder
    "DATABASE_URL": "",
    "RATELIMIT_STORAGE_URI": "memory://",
    # comma-separated Fernet keys, newest first; "" = the 0600 file in the instance folder
    "MASTER_KEY": "",
    # the URL signers' browsers reach the gateway at (http(s)://host[:port]): the relay URL
    # handed to DocuSign, the `iss` of gateway tokens, and the one host the gateway answers
    # for. "" = loopback only (`gateway serve` on loopback sets http://HOST:PORT itself)
    "PUBLIC_URL": "",
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "IDEMPOTENCY_TTL": 24 * 3600,
    # DocuSign asks for at most one status poll per envelope every 15 minutes
    "STATUS_MIN_POLL_INTERVAL": 15 * 60,
    "DOCUSIGN_CONNECT_TIMEOUT": 3.05,
    "DOCUSIGN_READ_TIMEOUT": 15.0,
    # the whole upstream exchange (retries included) must end within this budget
    "DOCUSIGN_TOTAL_BUDGET": 25.0,
    "DOCUSIGN_TOKEN_REFRESH_MARGIN": 300,
    # how often a running gateway looks for credentials changed by `gateway docusign configure`
    "DOCUSIGN_SETTINGS_RECHECK": 5,
    # the fleet's share of the DocuSign account's hourly API limit: LIMIT x (1 - RESERVE)
    "ACCOUNT_HOURLY_LIMIT": 3000,
    "ACCOUNT_RESERVE": 0.1,
    # a repeat of a running keyed create waits this long for its answer
    "IDEMPOTENCY_WAIT": 10.0,
    # a pending keyed create is its holder's this long (0: upstream budget + 5 s)
    "IDEMPOTENCY_LEASE": 0,
    # reverse proxies in front of the gateway whose X-Forwarded-* headers are trusted
    "PROXY_HOPS": 0,
    "RETURN_TOKEN_TTL": 3600,
    # the relay's confirming read keeps the signer's browser waiting: at most this long
    "RETURN_CONFIRM_BUDGET": 5.0,
    "GATEWAY_TOKEN_TTL": 900,
    # partner webhooks: a sender thread in serving processes (None = on unless TESTING;
    # the fleet-wide lease keeps it to one active sender), per-attempt timeout, retry caps
    "WEBHOOK_SENDER": None,
    "WEBHOOK_TIMEOUT": 10.0,
    "WEBHOOK_RETRY_SCHEDULE": (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200),
    # an event is given up only after the whole schedule AND at least this many seconds
    "WEBHOOK_RETRY_WINDOW": 24 * 3600,
    "WEBHOOK_INTERVAL": 1.0,
    # console sessions: ended after this long without a request, and this long after sign-in
    "ADMIN_IDLE_TIMEOUT": 30 * 60,
    "ADMIN_SESSION_LIFETIME": 8 * 3600,
    # console sign-in attempts, counted before the password is checked
    "ADMIN_LOGIN_RATE_LIMIT_IP": "20/minute;100/hour",
    "ADMIN_LOGIN_RATE_LIMIT_USER": "5/minute;30/hour",
    "ADMIN_LOGIN_RETRY_AFTER": 60,
    # the audit sealer: a thread in serving processes (None = on unless TESTING; a lease
    # keeps it to one across the fleet), how often it runs and how many rows per transaction
    "AUDIT_SEALER": None,
    "AUDIT_SEAL_INTERVAL": 1.0,
    "AUDIT_SEAL_BATCH": 1000,
    # bench mode: a folder for libpq protocol traces of every PostgreSQL connection ("" = off)
    "DB_TRACE_DIR": "",
    # failed requests of nobody known (no key, a bad key, no such route), per client address
    "ANONYMOUS_RATE_LIMIT": "120/minute",
    # the return relay, per signer's address: a browser comes back once per signing
    "RELAY_RATE_LIMIT": "60/minute",
    # logs: JSON lines for machines (`gateway serve`), or "text"; the owner's commands use text
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "CLI_LOG_LEVEL": "WARNING",
    # the readiness probe's token check: how long it may wait, how often it retries
    "READYZ_UPSTREAM_TIMEOUT": 2.0,
    "READYZ_UPSTREAM_RETRY": 10.0,
    # a Connect JSON SIM message with summary and recipients is a few KiB, never near this
    "CONNECT_MAX_BYTES": 256 * 1024,
    # console passwords: werkzeug's scrypt, or a costlier `scrypt:N:r:p`
    "ADMIN_PASSWORD_METHOD": "scrypt",
    "ADMIN_COOKIE_SAMESITE": "Strict",
    # storage failures raised as limits' StorageError (answered 503), not swallowed
    "RATELIMIT_STORAGE_OPTIONS": {"wrap_exceptions": True},
}

ENV_SETTINGS = {
    "GATEWAY_POLICY_DIR": "POLICY_DIR",
    "DATABASE_URL": "DATABASE_URL",
    "RATELIMIT_STORAGE_URI": "RATELIMIT_STORAGE_URI",
    "GATEWAY_MASTER_KEY": "MASTER_KEY",
    "GATEWAY_PUBLIC_URL": "PUBLIC_URL",
    "ACCOUNT_HOURLY_LIMIT": "ACCOUNT_HOURLY_LIMIT",
}


def instance_path() -> str:
    """The instance folder: `GATEWAY_INSTANCE_PATH`, else `./instance`."""
    return os.path.abspath(os.environ.get("GATEWAY_INSTANCE_PATH") or "instance")


def load(app: Flask, test_config: t.Mapping[str, t.Any] | None) -> None:
    """Defaults, then instance/config.py (not under test), the environment, the test's config."""
    app.config.from_mapping(copy.deepcopy(DEFAULTS))
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    for env_name, key in ENV_SETTINGS.items():
        if os.environ.get(env_name):
            app.config[key] = os.environ[env_name]
    app.config.from_prefixed_env("GATEWAY")
    if test_config is not None:
        app.config.from_mapping(test_config)
