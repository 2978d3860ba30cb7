"""The hot-reload policy cache: one stat per request, reload on change, fail closed."""

from __future__ import annotations

import logging
import os
import threading
import typing as t

from flask import Flask
from flask import current_app

from gateway.policy.loader import PolicyError
from gateway.policy.loader import PolicyFileInvalid
from gateway.policy.loader import load_policy
from gateway.policy.loader import parse_policy
from gateway.policy.loader import read_file
from gateway.policy.model import Policy
from gateway.policy.schema import NAME_RE

log = logging.getLogger(__name__)

_MISSING = (-1, -1, -1)


class PolicyStore:
    """The policies of one directory, reloaded when a file changes, without a restart."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        self._cache: dict[str, tuple[tuple[int, int, int], Policy | None]] = {}
        self._lock = threading.Lock()

    def path_for(self, partner: str) -> str:
        """The policy file that would hold `partner`'s policy."""
        return os.path.join(self.directory, f"{partner}.toml")

    def get(self, partner: str) -> Policy | None:
        """`partner`'s current policy, or None when its file is missing or invalid.

        Costs one `os.stat` when nothing changed; a change of (mtime, size, inode) triggers a
        reload, and its failure is logged once until the file changes again.
        """
        if not isinstance(partner, str) or not NAME_RE.fullmatch(partner):
            return None
        path = self.path_for(partner)
        try:
            st = os.stat(path)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            key = _MISSING
        cached = self._cache.get(partner)
        if cached is not None and cached[0] == key:
            return cached[1]
        with self._lock:
            cached = self._cache.get(partner)
            if cached is not None and cached[0] == key:
                return cached[1]
            key, policy = self._load(partner, path)
            self._cache[partner] = (key, policy)
            return policy

    def _load(self, partner: str, path: str) -> tuple[tuple[int, int, int], Policy | None]:
        try:
            raw, key = read_file(path)
        except FileNotFoundError:
            log.warning("no policy file for partner %r at %s: denying everything", partner, path)
            return _MISSING, None
        except OSError as exc:
            log.error("cannot read policy file %s (%s): denying everything", path, exc.strerror)
            return _MISSING, None
        try:
            policy = parse_policy(raw, path)
        except PolicyFileInvalid as exc:
            log.error("invalid policy file, partner %r denied everything:\n%s", partner, exc)
            return key, None
        log.info("loaded policy for partner %r from %s", partner, path)
        return key, policy

    def names(self) -> list[str]:
        """Partner names that have a policy file (valid or not), sorted."""
        try:
            entries = os.listdir(self.directory)
        except OSError:
            return []
        stems = (name[: -len(".toml")] for name in entries if name.endswith(".toml"))
        return sorted(stem for stem in stems if NAME_RE.fullmatch(stem))

    def check_all(self) -> tuple[dict[str, Policy], list[PolicyFileInvalid]]:
        """Load every `*.toml` in the directory: the valid policies and every invalid file."""
        try:
            entries = sorted(os.listdir(self.directory))
        except OSError as exc:
            error = PolicyError(self.directory, "", f"cannot list directory ({exc.strerror})")
            return {}, [PolicyFileInvalid(self.directory, [error])]
        valid: dict[str, Policy] = {}
        invalid: list[PolicyFileInvalid] = []
        for entry in entries:
            path = os.path.join(self.directory, entry)
            if not entry.endswith(".toml") or not os.path.isfile(path):
                continue
            try:
                policy = load_policy(path)
            except PolicyFileInvalid as exc:
                invalid.append(exc)
            else:
                valid[policy.partner] = policy
        return valid, invalid


def init_app(app: Flask) -> None:
    """Attach a `PolicyStore` for `POLICY_DIR` (relative paths from the working directory)."""
    directory = os.path.join(os.getcwd(), app.config["POLICY_DIR"])
    app.extensions["policies"] = PolicyStore(directory)


def get_policies() -> PolicyStore:
    """The current app's `PolicyStore`."""
    return t.cast(PolicyStore, current_app.extensions["policies"])
