"""Who is acting, and what they may do: roles, the one permissions table, password hashing and
sign-in against the local user store (core.store.users).

    from core import auth
    user = auth.authenticate(repo, "ada", "correct horse battery staple")   # -> Identity
    auth.require(user, "promote")                     # PermissionDenied unless the role allows it
    name = auth.authorize(user, "label")              # the name to record, after the check

Modes (setting NEUROGRADE_AUTH, core.config):
- local (the embedded default): sign in with a name and password from the `users` table; the
  first administrator is created by `python -m core users add NAME --role admin`.
- oidc: Streamlit's `st.login` with the OpenID Connect provider of `.streamlit/secrets.toml`
  ([auth]); the signed-in e-mail must be an account in the `users` table (it gives the role).
- off: no sign-in, one local user with every permission; only when set explicitly, and then the
  app serves this machine only (app.py refuses other clients, `core serve` refuses other binds).

Core calls that change state take an `actor`: an `Identity` (the pages always pass one) is
checked against the permissions table here; a plain string is a trusted in-process caller (the
command line, whose user owns the database anyway, and background workers) and is recorded as is.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass

from core.config import get_settings

ROLES = ("clinician", "reviewer", "trainer", "admin")  # each role has the permissions of those before it
MODES = ("local", "oidc", "off")

# The permissions table: what each permission is, and the least role that holds it.
PERMISSIONS: dict[str, tuple[str, str]] = {
    "scan": ("clinician", "open scans and see the verdict"),
    "report": ("clinician", "download PDF / JSON reports"),
    "send_to_review": ("clinician", "send a case to the review queue"),
    "pacs": ("clinician", "open studies from the PACS and send results (DICOM SR, key images) back to it"),
    "label": ("reviewer", "confirm, correct, skip or flag review items; double reading"),
    "train": ("trainer", "start and cancel training runs and research jobs"),
    "promote": ("admin", "promote a model version"),
    "rollback": ("admin", "roll back to the previous champion"),
    "force_promote": ("admin", "promote a version that does not beat the champion"),
    "manage_users": ("admin", "add users, change roles, disable accounts"),
}

MIN_PASSWORD_LENGTH = 10
_NAME = re.compile(r"^[A-Za-z0-9._@+\-' ]{1,64}$")


class AuthError(Exception):
    """Sign-in failed (one message for unknown name and wrong password), or a bad account change."""


class PermissionDenied(PermissionError):
    """The signed-in role may not do this."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    via: str = "local"  # local | oidc | off | cli

    def can(self, permission: str) -> bool:
        return can(self.role, permission)

    @property
    def permissions(self) -> list[str]:
        return [p for p in PERMISSIONS if self.can(p)]


def role_rank(role: str) -> int:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    return ROLES.index(role)


def can(role: str | None, permission: str) -> bool:
    """Whether `role` holds `permission` (unknown roles hold nothing; unknown permissions raise)."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(PERMISSIONS[permission][0])


def permissions_table() -> list[dict]:
    """[{permission, meaning, clinician: bool, reviewer: bool, ...}] for the README and the Users page."""
    return [
        {"permission": p, "meaning": meaning, **{r: can(r, p) for r in ROLES}}
        for p, (_, meaning) in PERMISSIONS.items()
    ]


def require(actor, permission: str) -> None:
    """Raise PermissionDenied unless `actor` (an Identity) may; plain strings are trusted callers."""
    if isinstance(actor, Identity) and not actor.can(permission):
        raise PermissionDenied(
            f"{actor.name} ({actor.role}) may not {PERMISSIONS[permission][1]}: "
            f"that needs the {PERMISSIONS[permission][0]} role"
        )
    if actor is None:
        raise PermissionDenied(f"sign in to {PERMISSIONS[permission][1]}")


def authorize(actor, permission: str) -> str:
    """Check `actor` for `permission` (see require) and return the name to record."""
    require(actor, permission)
    return actor_name(actor)


def actor_name(actor) -> str:
    return actor.name if isinstance(actor, Identity) else str(actor or "").strip()


def cli_actor(name: str | None = None) -> str:
    """Who a command-line call is recorded as: --actor NAME, else the operating-system user."""
    if name and str(name).strip():
        return str(name).strip()
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"cli:uid{os.getuid()}"


def local_identity() -> Identity:
    """The one user of NEUROGRADE_AUTH=off: this machine's user, with every permission."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "local"
    return Identity(name, "admin", "off")


def auth_mode() -> str:
    return get_settings().auth


# ------------------------------------------------------------------------------- passwords
def _hasher():
    from argon2 import PasswordHasher  # argon2: only when a password is checked; core.auth stays light for the CLI

    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile, 16-byte random salt


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher().hash(password)


def check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise AuthError("a password has at most 1024 characters")


def verify_password(stored_hash: str | None, password: str) -> bool:
    # argon2: only when a password is checked; core.auth stays light for the CLI
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    if not stored_hash or not isinstance(password, str):
        return False
    try:
        return _hasher().verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


_DUMMY_HASH: list[str] = []


def _burn_time(password: str) -> None:
    """Verify against a throwaway hash, so an unknown name takes as long as a wrong password."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(_hasher().hash("not-a-real-password-0123456789"))
    verify_password(_DUMMY_HASH[0], password)


def check_name(name: str) -> str:
    name = str(name or "").strip()
    if not _NAME.match(name):
        raise AuthError("a user name is 1-64 letters, digits, spaces or . _ @ + - '")
    return name


# ------------------------------------------------------------------------------- sign-in
def authenticate(repo, name: str, password: str) -> Identity:
    """The Identity of an enabled local account whose password matches; AuthError otherwise (the
    same message whether the name is unknown, the password wrong or the account disabled)."""
    from core.store import users  # heavy: sqlalchemy; core.auth stays light for the CLI

    name = str(name or "").strip()
    user = users.get_user(repo, name) if _NAME.match(name) else None
    stored = users.password_hash(repo, name) if user is not None else None
    if stored is None:
        _burn_time(password or "")
        ok = False
    else:
        ok = verify_password(stored, password)
    if not ok or user.disabled or user.role not in ROLES:
        users.record_login(repo, name or "?", False, "password")
        raise AuthError("Wrong user name or password, or the account is disabled.")
    rehash = _hasher().hash(password) if _hasher().check_needs_rehash(stored) else None
    users.record_login(repo, name, True, "password", rehash=rehash)
    return Identity(user.name, user.role, "local")


def identity_for(repo, name: str, via: str = "local") -> Identity | None:
    """The current Identity of a signed-in account (role changes and disabling take effect on the
    next page run), or None when it no longer exists or is disabled."""
    from core.store import users  # heavy: sqlalchemy; core.auth stays light for the CLI

    user = users.get_user(repo, str(name or "").strip())
    if user is None or user.disabled or user.role not in ROLES:
        return None
    return Identity(user.name, user.role, via)


def oidc_identity(repo, claims) -> Identity:
    """The Identity of a user signed in through the OIDC provider: their e-mail (else `sub`) must be
    an enabled account of the user store, which gives the role. AuthError otherwise."""
    email = str((claims or {}).get("email") or "").strip().lower()
    if email and (claims or {}).get("email_verified") is False:
        raise AuthError(f"the provider has not verified {email}")
    key = email or str((claims or {}).get("sub") or "").strip()
    if not key:
        raise AuthError("the provider returned no e-mail address")
    ident = identity_for(repo, key, via="oidc")
    if ident is None:
        raise AuthError(
            f"{key} has no NeuroGrade account (or it is disabled): ask an administrator to "
            f"run `python -m core users add {key} --role clinician --oidc`"
        )
    return ident


# ------------------------------------------------------------------------------- accounts
def add_user(repo, name: str, role: str, password: str | None, actor):
    """Create an account (password None: OIDC sign-in only). Needs manage_users."""
    from core.store import users  # heavy: sqlalchemy; core.auth stays light for the CLI

    who = authorize(actor, "manage_users")
    role_rank(role)
    name = check_name(name)
    return users.create_user(repo, name, role, hash_password(password) if password is not None else None, who)


def set_role(repo, name: str, role: str, actor):
    from core.store import users  # heavy: sqlalchemy; core.auth stays light for the CLI

    who = authorize(actor, "manage_users")
    role_rank(role)
    _keep_an_admin(repo, name, demoting=role != "admin")
    return users.update_user(repo, name, who, role=role, action="set_role")


def set_disabled(repo, name: str, disabled: bool, actor):
    from core.store import users  # heavy: sqlalchemy; core.auth stays light for the CLI

    who = authorize(actor, "manage_users")
    if disabled:
        _keep_an_admin(repo, name, demoting=True)
    return users.update_user(repo, name, who, disabled=disabled, action="disable" if disabled else "enable")


def set_password(repo, name: str, password: str, actor):
    """An admin resets anyone's password; any signed-in user may change their own."""
    from core.store import users  # heavy: sqlalchemy; core.auth stays light for the CLI

    if not (isinstance(actor, Identity) and actor.name == name):
        authorize(actor, "manage_users")
    return users.update_user(
        repo, name, actor_name(actor), password_hash=hash_password(password), action="set_password"
    )


def _keep_an_admin(repo, name: str, demoting: bool) -> None:
    """Never leave the store without an enabled administrator (nobody could manage users)."""
    from core.store import users  # heavy: sqlalchemy; core.auth stays light for the CLI

    if not demoting:
        return
    user = users.get_user(repo, name)
    if user is None or user.role != "admin" or user.disabled:
        return
    admins = [u for u in users.list_users(repo) if u.role == "admin" and not u.disabled]
    if len(admins) <= 1:
        raise AuthError(f"{name} is the last enabled administrator: make another one first")


def needs_first_admin(repo) -> bool:
    from core.store import users  # heavy: sqlalchemy; core.auth stays light for the CLI

    return not any(u.role == "admin" and not u.disabled for u in users.list_users(repo))


__all__ = [
    "ROLES",
    "MODES",
    "PERMISSIONS",
    "Identity",
    "AuthError",
    "PermissionDenied",
    "can",
    "require",
    "authorize",
    "actor_name",
    "cli_actor",
    "local_identity",
    "auth_mode",
    "permissions_table",
    "hash_password",
    "verify_password",
    "check_password",
    "check_name",
    "authenticate",
    "identity_for",
    "oidc_identity",
    "add_user",
    "set_role",
    "set_disabled",
    "set_password",
    "needs_first_admin",
    "role_rank",
    "MIN_PASSWORD_LENGTH",
]
