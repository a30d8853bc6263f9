"""DashboardOptions: what the dashboard does, and reading credentials from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

TOKEN_ENV = "ERRANDS_DASHBOARD_TOKEN"
USERS_ENV = "ERRANDS_DASHBOARD_USERS"


@dataclass(frozen=True)
class DashboardOptions:
    """Options of :func:`errands.dashboard.create_app`.

    With ``token`` or ``basic_users`` set, every route needs them (a bearer token,
    ``?token=`` once, which sets a cookie, or HTTP basic auth).
    """

    read_only: bool = False
    token: str | None = None
    #: user name -> password, for HTTP basic auth.
    basic_users: Mapping[str, str] = field(default_factory=dict)
    title: str = "Errands"
    #: The overview reloads its data this often; 0 turns live refresh off.
    refresh_seconds: int = 5
    page_size: int = 50
    #: Below this many unfinished jobs (planner estimate) counts are exact.
    exact_count_below: int = 100_000
    #: Connections the dashboard keeps open at most.
    max_connections: int = 4

    def __post_init__(self) -> None:
        if self.refresh_seconds < 0:
            raise ValueError(f"refresh_seconds must be >= 0, got {self.refresh_seconds}")
        if not 1 <= self.page_size <= 1000:
            raise ValueError(f"page_size must be between 1 and 1000, got {self.page_size}")
        if self.token is not None and not self.token:
            raise ValueError("token must not be empty")

    @property
    def needs_credentials(self) -> bool:
        return bool(self.token) or bool(self.basic_users)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, read_only: bool = False
    ) -> DashboardOptions:
        """Options with the credentials of ERRANDS_DASHBOARD_TOKEN and
        ERRANDS_DASHBOARD_USERS ("alice:pw1,bob:pw2")."""
        env = os.environ if environ is None else environ
        token = env.get(TOKEN_ENV) or None
        users = parse_users(env.get(USERS_ENV, ""))
        return cls(read_only=read_only, token=token, basic_users=users)


def parse_users(text: str) -> dict[str, str]:
    """``"alice:pw1,bob:pw2"`` -> ``{"alice": "pw1", "bob": "pw2"}``."""
    users: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, password = item.strip().partition(":")
        if not sep or not name or not password:
            raise ValueError(f"{USERS_ENV}: expected name:password, got an entry {name!r} without")
        users[name] = password
    return users
