"""The user store (migration 0003) on SQLite and PostgreSQL, and `python -m core users ...`."""

import io
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from core import auth
from core.cli import main
from core.store.db import current_revision, downgrade, get_engine, init_db, upgrade

PW = "correct horse battery"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_migration_0003_adds_users_and_keeps_rows_and_downgrades(db_url):
    engine = get_engine(db_url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        md = sa.MetaData()
        md.reflect(conn)
        assert "users" not in md.tables
        conn.execute(
            md.tables["audit"].insert(),
            [{"at": T0, "actor": "ann", "action": "label", "entity": "queue_entry", "entity_id": "1:t"}],
        )
    init_db(db_url)
    assert current_revision(engine) == "0003"
    with engine.connect() as conn:
        cols = {c["name"]: c for c in sa.inspect(conn).get_columns("users")}
        assert set(cols) == {
            "id",
            "name",
            "role",
            "password_hash",
            "disabled",
            "created_at",
            "updated_at",
            "last_login_at",
        }
        assert cols["password_hash"]["nullable"] and not cols["name"]["nullable"]
        assert conn.execute(sa.text("SELECT actor FROM audit")).scalar() == "ann"
    from core.store import Store

    repo = Store.open(db_url)
    auth.add_user(repo, "ada", "admin", PW, "cli:test")
    with pytest.raises(sa.exc.IntegrityError):  # the name is unique in the database itself
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO users (name, role, disabled, created_at, updated_at) "
                    "VALUES ('ada', 'clinician', false, :t, :t)"
                ),
                {"t": T0},
            )
    downgrade(engine, "0002")
    with engine.connect() as conn:
        assert "users" not in sa.inspect(conn).get_table_names()


def test_accounts_roles_and_sign_in_on_both_databases(repo):
    from core.store import users

    assert auth.needs_first_admin(repo) and users.count_users(repo) == 0
    auth.add_user(repo, "ada", "admin", PW, "cli:test")
    admin = auth.Identity("ada", "admin")
    auth.add_user(repo, "bo", "clinician", PW, admin)
    auth.add_user(repo, "cy@hospital.org", "reviewer", None, admin)
    assert [(u.name, u.role, u.has_password) for u in users.list_users(repo)] == [
        ("ada", "admin", True),
        ("bo", "clinician", True),
        ("cy@hospital.org", "reviewer", False),
    ]
    assert auth.authenticate(repo, "bo", PW).role == "clinician"
    assert users.get_user(repo, "bo").last_login_at is not None
    auth.set_disabled(repo, "bo", True, admin)
    with pytest.raises(auth.AuthError):
        auth.authenticate(repo, "bo", PW)
    assert users.count_users(repo, enabled_only=True) == 2
    assert auth.oidc_identity(repo, {"email": "cy@hospital.org"}).role == "reviewer"
    log = [(a.actor, a.action, a.entity_id) for a in repo.audit.entries(entity="user")]
    assert ("ada", "create", "bo") in log and ("ada", "disable", "bo") in log
    assert ("bo", "sign_in", "bo") in log and ("bo", "sign_in_failed", "bo") in log
    with pytest.raises(auth.AuthError):  # a very long typed name still leaves a valid row
        auth.authenticate(repo, "x" * 500, PW)


# ------------------------------------------------------------------------------------ CLI
def _stdin(monkeypatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_users_cli_add_list_set_role_disable_passwd(db_url, monkeypatch, capsys):
    import getpass

    from core.store import Store

    _stdin(monkeypatch, PW + "\n")
    assert main(["users", "add", "ada", "--role", "admin"]) == 0
    assert "added ada (admin)" in capsys.readouterr().out
    _stdin(monkeypatch, "short\n")
    assert main(["users", "add", "bo", "--role", "clinician"]) == 1
    assert "at least" in capsys.readouterr().err
    _stdin(monkeypatch, PW + "\n")
    assert main(["users", "add", "bo", "--role", "clinician", "--actor", "ada"]) == 0
    _stdin(monkeypatch, PW + "\n")
    assert main(["users", "add", "bo", "--role", "admin"]) == 1  # exists
    assert "already exists" in capsys.readouterr().err
    assert main(["users", "add", "cy@hospital.org", "--role", "reviewer", "--oidc"]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--json"]) == 0
    rows = {u["name"]: u for u in json.loads(capsys.readouterr().out)}
    assert rows["ada"]["role"] == "admin" and rows["bo"]["role"] == "clinician"
    assert rows["cy@hospital.org"]["has_password"] is False
    assert "password_hash" not in json.dumps(rows) and "argon2" not in json.dumps(rows)
    assert main(["users", "set-role", "bo", "trainer"]) == 0
    with pytest.raises(SystemExit):
        main(["users", "set-role", "bo", "god"])  # argparse choices
    assert main(["users", "set-role", "ada", "clinician"]) == 1  # the last admin
    assert "last enabled administrator" in capsys.readouterr().err
    assert main(["users", "disable", "bo"]) == 0
    assert main(["users", "set-role", "nobody", "admin"]) == 1
    _stdin(monkeypatch, "a brand new password\n")
    assert main(["users", "passwd", "ada"]) == 0
    repo = Store.open()
    assert auth.authenticate(repo, "ada", "a brand new password").role == "admin"
    with pytest.raises(auth.AuthError):
        auth.authenticate(repo, "bo", PW)  # disabled
    me = f"cli:{getpass.getuser()}"
    log = [(a.actor, a.action, a.entity_id) for a in repo.audit.entries(entity="user")]
    assert (me, "create", "ada") in log and ("ada", "create", "bo") in log
    assert (me, "set_role", "bo") in log and (me, "disable", "bo") in log and (me, "set_password", "ada") in log


def test_users_init_is_a_no_op_without_a_terminal(db_url, monkeypatch, capsys):
    _stdin(monkeypatch, "")
    assert main(["users", "init"]) == 0
    assert "users add NAME --role admin" in capsys.readouterr().err
    monkeypatch.setenv("NEUROGRADE_AUTH", "off")
    assert main(["users", "init"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_label_records_the_os_user_or_the_named_actor(repo, capsys):
    import getpass

    import numpy as np

    case = repo.cases.save(
        {"modality": "MR", "shape": (2, 8, 8)},
        np.zeros((2, 8, 8), np.float32),
        [{"index": i, "task": "tumor_type", "model_version": "t", "probabilities": [0.6, 0.3, 0.1]} for i in range(2)],
        source="test",
    )
    a, b = [it.id for it in repo.cases.items(case)]
    assert main(["queue", "label", str(a), "glioma", "--task", "tumor_type"]) == 0
    assert main(["queue", "label", str(b), "glioma", "--task", "tumor_type", "--actor", "Dr Ada"]) == 0
    assert repo.queue.entry(a, "tumor_type").current_label.reviewer == f"cli:{getpass.getuser()}"
    assert repo.queue.entry(b, "tumor_type").current_label.reviewer == "Dr Ada"
    assert [e.actor for e in repo.audit.entries(action="label")] == [f"cli:{getpass.getuser()}", "Dr Ada"]
