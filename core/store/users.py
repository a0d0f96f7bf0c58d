"""The user store: accounts with a role, a password hash and a disabled flag (table `users`,
migration 0003), over a Store's session. Every change is audited with who made it; the hash
never leaves this module except to `core.auth`, which alone hashes and verifies.

Rules (roles, permissions, password policy) live in `core.auth`; this module only stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from core.store.errors import NotFound, StoreError
from core.store.models import User, utcnow


class UserExists(StoreError):
    pass


@dataclass(frozen=True)
class UserView:
    id: int
    name: str
    role: str
    disabled: bool
    has_password: bool
    created_at: datetime | None
    last_login_at: datetime | None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "disabled": self.disabled,
            "has_password": self.has_password,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
        }


def _view(row: User) -> UserView:
    return UserView(
        row.id, row.name, row.role, bool(row.disabled), row.password_hash is not None, row.created_at, row.last_login_at
    )


def _row(s, name: str) -> User | None:
    return s.scalars(select(User).where(User.name == name)).one_or_none()


def count_users(repo, *, enabled_only: bool = False) -> int:
    with repo.session() as s:
        q = select(func.count()).select_from(User)
        if enabled_only:
            q = q.where(User.disabled.is_(False))
        return int(s.scalar(q) or 0)


def get_user(repo, name: str) -> UserView | None:
    with repo.session() as s:
        row = _row(s, name)
        return _view(row) if row is not None else None


def list_users(repo) -> list[UserView]:
    with repo.session() as s:
        return [_view(r) for r in s.scalars(select(User).order_by(User.name)).all()]


def password_hash(repo, name: str) -> str | None:
    """For core.auth only: the stored hash of an enabled or disabled account, or None."""
    with repo.session() as s:
        row = _row(s, name)
        return row.password_hash if row is not None else None


def create_user(repo, name: str, role: str, password_hash: str | None, actor: str) -> UserView:
    with repo.session() as s:
        if _row(s, name) is not None:
            raise UserExists(f"a user named {name!r} already exists")
        now = utcnow()
        row = User(name=name, role=role, password_hash=password_hash, disabled=False, created_at=now, updated_at=now)
        s.add(row)
        s.flush()
        repo.audit.add(s, actor, "create", "user", name, None, {"role": role, "password": password_hash is not None})
        return _view(row)


def update_user(
    repo,
    name: str,
    actor: str,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    password_hash: str | None = None,
    action: str = "update",
) -> UserView:
    """Change an account's role, disabled flag or password hash (audited; the hash is not)."""
    with repo.session() as s:
        row = _row(s, name)
        if row is None:
            raise NotFound(f"no user named {name!r}")
        before = {"role": row.role, "disabled": bool(row.disabled)}
        if role is not None:
            row.role = role
        if disabled is not None:
            row.disabled = disabled
        if password_hash is not None:
            row.password_hash = password_hash
        row.updated_at = utcnow()
        after = {"role": row.role, "disabled": bool(row.disabled)}
        if password_hash is not None:
            after["password_changed"] = True
        repo.audit.add(s, actor, action, "user", name, before, after)
        return _view(row)


def record_login(repo, name: str, ok: bool, how: str, rehash: str | None = None) -> None:
    """An audit row for each sign-in attempt; a successful one also stamps last_login_at (and
    stores a stronger hash when the parameters changed)."""
    name = str(name)[:100]  # a failed attempt may type anything: keep the audit row valid
    with repo.session() as s:
        row = _row(s, name)
        if ok and row is not None:
            row.last_login_at = utcnow()
            if rehash:
                row.password_hash = rehash
        repo.audit.add(s, name, "sign_in" if ok else "sign_in_failed", "user", name, None, {"via": how})


__all__ = [
    "UserView",
    "UserExists",
    "count_users",
    "get_user",
    "list_users",
    "password_hash",
    "create_user",
    "update_user",
    "record_login",
]
