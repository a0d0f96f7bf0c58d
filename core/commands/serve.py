"""`python -m core serve [--address A] [--port P] [-- STREAMLIT OPTIONS]`: start the app.

`streamlit run app.py` with a guard: with sign-in off (NEUROGRADE_AUTH=off) it binds only a
loopback address; any other address needs sign-in on (local or oidc). `make run` and the Docker
image start the app through it. Behind a reverse proxy (deploy/), bind 127.0.0.1 and let the proxy
face the network.
"""

from __future__ import annotations

import ipaddress
import os
import sys

from core import auth
from core.config import REPO_ROOT


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="start the web app (refuses a network bind with sign-in off)", description=__doc__
    )
    p.add_argument("--address", default="localhost", help="address to bind (default: localhost)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p.add_argument("streamlit_args", nargs="*", help="more `streamlit run` options, after --")
    p.set_defaults(func=run)


def is_loopback(address: str) -> bool:
    if address.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(mode: str, address: str) -> str | None:
    """Why this bind is refused, or None."""
    if mode == "off" and not is_loopback(address):
        return (
            f"sign-in is off (NEUROGRADE_AUTH=off): refusing to serve on {address}, which other machines "
            "can reach. Turn sign-in on (NEUROGRADE_AUTH=local, the default) or bind 127.0.0.1."
        )
    return None


def command(address: str, port: int, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO_ROOT / "app.py"),
        f"--server.address={address}",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
        *extra,
    ]


def run(args) -> int:
    try:
        mode = auth.auth_mode()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    why = check_bind(mode, args.address)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    if mode == "local":
        from core.store import Store  # heavy: sqlalchemy, only for this command

        if auth.needs_first_admin(Store.open()):
            print(
                "note: no administrator account yet, so nobody can sign in: "
                "`python -m core users add NAME --role admin`",
                file=sys.stderr,
            )
    cmd = command(args.address, args.port, list(args.streamlit_args))
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
    return 0  # not reached
