"""`python -m core users ...`: the accounts that may sign in (NEUROGRADE_AUTH=local or oidc).

    users add NAME --role ROLE [--oidc]   create an account; the password is asked twice on a
                                           terminal, else read from the first line of stdin
                                           (--oidc: no password, signs in through the provider)
    users list [--json]
    users set-role NAME ROLE
    users disable NAME | users enable NAME
    users passwd NAME                      set a new password (asked, or from stdin)
    users init                             on a terminal, when no administrator exists yet, ask for
                                           the first one (`make run` calls it); otherwise a no-op

Roles: clinician (scan, report, send to review) < reviewer (+ label) < trainer (+ train) <
admin (+ promote, roll back, force, manage users). The shell user owns the database, so these
commands are not role-checked; each change is audited as --actor NAME or the OS user.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from core import auth


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "users",
        help="accounts and roles: add, list, set-role, disable",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])

    def actor(p):
        p.add_argument("--actor", default=None, help="who makes the change (default: the OS user)")

    p = sub.add_parser("add", help="create an account")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=auth.ROLES)
    p.add_argument(
        "--oidc",
        action="store_true",
        help="no password: signs in through the OIDC provider (NAME is the e-mail address it reports)",
    )
    actor(p)
    p.set_defaults(func=run_add)

    p = sub.add_parser("list", help="the accounts with role and status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_list)

    p = sub.add_parser("set-role", help="change an account's role")
    p.add_argument("name")
    p.add_argument("role", choices=auth.ROLES)
    actor(p)
    p.set_defaults(func=run_set_role)

    for name, disabled in (("disable", True), ("enable", False)):
        p = sub.add_parser(name, help=f"{name} an account (accounts are never deleted)")
        p.add_argument("name")
        actor(p)
        p.set_defaults(func=run_disable, disabled=disabled)

    p = sub.add_parser("passwd", help="set an account's password")
    p.add_argument("name")
    actor(p)
    p.set_defaults(func=run_passwd)

    p = sub.add_parser("init", help="ask for the first administrator when there is none (terminal only)")
    p.set_defaults(func=run_init)


def _repo():
    from core.store import Store  # heavy: sqlalchemy, only for this command

    return Store.open()


def read_password(prompt: str = "Password") -> str:
    """Twice on a terminal (they must match), else the first line of stdin."""
    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass(f"{prompt}: ")
        if getpass.getpass(f"{prompt} again: ") != first:
            raise auth.AuthError("the two passwords differ")
        return first
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\r\n")


def _account_change(change, done: str) -> int:
    """Run one account change; its refusal (not an admin, the last admin, bad name or role, store
    error) is one line on stderr and exit 1."""
    from core.store import StoreError  # heavy: sqlalchemy, only for this command

    try:
        user = change()
    except (auth.AuthError, StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(done.format(user=user))
    return 0


def run_add(args) -> int:
    def add():
        password = None if args.oidc else read_password(f"Password for {args.name}")
        return auth.add_user(_repo(), args.name, args.role, password, auth.cli_actor(args.actor))

    return _account_change(
        add, "added {user.name} ({user.role})" + (", signs in through the OIDC provider" if args.oidc else "")
    )


def run_list(args) -> int:
    from core.store import users  # heavy: sqlalchemy, only for this command

    rows = users.list_users(_repo())
    if args.json:
        print(json.dumps([u.to_dict() for u in rows]))
        return 0
    for u in rows:
        print(
            f"{u.name:<30} {u.role:<10} {'disabled' if u.disabled else 'active':<9} "
            f"{'password' if u.has_password else 'oidc':<9} last sign-in {str(u.last_login_at or '-')[:19]}"
        )
    if not rows:
        print("no accounts yet: python -m core users add NAME --role admin")
    return 0


def run_set_role(args) -> int:
    return _account_change(
        lambda: auth.set_role(_repo(), args.name, args.role, auth.cli_actor(args.actor)),
        "{user.name} is now {user.role}",
    )


def run_disable(args) -> int:
    return _account_change(
        lambda: auth.set_disabled(_repo(), args.name, args.disabled, auth.cli_actor(args.actor)),
        "{user.name} is " + ("disabled" if args.disabled else "enabled"),
    )


def run_passwd(args) -> int:
    return _account_change(
        lambda: auth.set_password(
            _repo(), args.name, read_password(f"New password for {args.name}"), auth.cli_actor(args.actor)
        ),
        f"{args.name}'s password is changed",
    )


def run_init(args) -> int:
    """`make run`: make sure someone can sign in. Never blocks a non-interactive start."""
    from core.store import StoreError  # heavy: sqlalchemy, only for this command

    if auth.auth_mode() == "off":
        return 0
    repo = _repo()
    if not auth.needs_first_admin(repo):
        return 0
    if auth.auth_mode() == "oidc" or sys.stdin is None or not sys.stdin.isatty():
        print(
            "No administrator yet: create one with `python -m core users add NAME --role admin"
            + (" --oidc" if auth.auth_mode() == "oidc" else "")
            + "`.",
            file=sys.stderr,
        )
        return 0
    print("NeuroGrade needs a first administrator account (sign-in is on).")
    default = auth.local_identity().name
    name = input(f"Administrator name [{default}]: ").strip() or default
    for _ in range(3):
        try:
            user = auth.add_user(repo, name, "admin", read_password(f"Password for {name}"), auth.cli_actor(None))
        except auth.AuthError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        except (StoreError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"added {user.name} (admin): sign in with it in the browser")
        return 0
    return 1
