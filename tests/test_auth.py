"""core.auth: password hashing, sign-in against the user store, the permissions table, and the
core calls that check the signed-in role themselves (not only the pages)."""

import numpy as np
import pytest

from core import auth
from core.auth import Identity

PW = "correct horse battery"


@pytest.fixture
def repo():
    from core.store import Store

    return Store.open()


def test_hash_is_salted_argon2id_and_verifies():
    a, b = auth.hash_password(PW), auth.hash_password(PW)
    assert a.startswith("$argon2id$") and b.startswith("$argon2id$")
    assert a != b  # a fresh salt each time
    assert PW not in a
    assert auth.verify_password(a, PW) and auth.verify_password(b, PW)
    assert not auth.verify_password(a, PW + "!")
    assert not auth.verify_password(a, "")
    assert not auth.verify_password(None, PW)
    assert not auth.verify_password("not a hash", PW)


def test_short_passwords_and_bad_names_are_refused(repo):
    with pytest.raises(auth.AuthError, match="at least"):
        auth.hash_password("short")
    for bad in ("", " ", "a" * 65, "![x](http://evil/x.png)", "<b>bo</b>", "x\ny"):
        with pytest.raises(auth.AuthError):
            auth.add_user(repo, bad, "clinician", PW, "test")


def test_authenticate_right_wrong_unknown_disabled(repo):
    auth.add_user(repo, "ada", "reviewer", PW, "test")
    ident = auth.authenticate(repo, " ada ", PW)
    assert ident == Identity("ada", "reviewer", "local")
    with pytest.raises(auth.AuthError) as wrong:
        auth.authenticate(repo, "ada", PW + "x")
    with pytest.raises(auth.AuthError) as unknown:
        auth.authenticate(repo, "nobody", PW)
    assert str(wrong.value) == str(unknown.value)  # no hint which one was wrong
    auth.set_disabled(repo, "ada", True, "test")
    with pytest.raises(auth.AuthError):
        auth.authenticate(repo, "ada", PW)
    assert auth.identity_for(repo, "ada") is None  # a signed-in session ends too
    auth.set_disabled(repo, "ada", False, "test")
    assert auth.authenticate(repo, "ada", PW).role == "reviewer"
    actions = [(a.actor, a.action) for a in repo.audit.entries(entity="user")]
    assert ("ada", "sign_in") in actions and ("ada", "sign_in_failed") in actions
    assert ("nobody", "sign_in_failed") in actions
    assert ("test", "disable") in actions and ("test", "create") in actions
    assert all("argon2" not in repr(a.before) + repr(a.after) for a in repo.audit.entries(entity="user"))


def test_oidc_accounts_have_no_password_and_map_by_email(repo):
    auth.add_user(repo, "ada@hospital.org", "trainer", None, "test")
    with pytest.raises(auth.AuthError):  # no password: no local sign-in
        auth.authenticate(repo, "ada@hospital.org", "")
    ident = auth.oidc_identity(repo, {"email": "Ada@Hospital.org", "email_verified": True, "sub": "123"})
    assert ident == Identity("ada@hospital.org", "trainer", "oidc")
    with pytest.raises(auth.AuthError, match="no NeuroGrade account"):
        auth.oidc_identity(repo, {"email": "eve@elsewhere.org"})
    with pytest.raises(auth.AuthError, match="not verified"):
        auth.oidc_identity(repo, {"email": "ada@hospital.org", "email_verified": False})


def test_permissions_table():
    expected = {
        "clinician": {"scan", "report", "send_to_review", "pacs"},
        "reviewer": {"scan", "report", "send_to_review", "pacs", "label"},
        "trainer": {"scan", "report", "send_to_review", "pacs", "label", "train"},
        "admin": set(auth.PERMISSIONS),
    }
    for role, perms in expected.items():
        assert set(Identity("x", role).permissions) == perms, role
    assert not auth.can("superuser", "scan") and not auth.can(None, "scan")
    with pytest.raises(KeyError):
        auth.can("admin", "fly")
    table = auth.permissions_table()
    assert [r["permission"] for r in table] == list(auth.PERMISSIONS)
    assert next(r for r in table if r["permission"] == "promote") | {} == {
        "permission": "promote",
        "meaning": auth.PERMISSIONS["promote"][1],
        "clinician": False,
        "reviewer": False,
        "trainer": False,
        "admin": True,
    }


def test_require_and_authorize():
    with pytest.raises(auth.PermissionDenied, match="needs the admin role"):
        auth.require(Identity("cy", "trainer"), "promote")
    with pytest.raises(auth.PermissionDenied, match="sign in"):
        auth.require(None, "label")
    assert auth.authorize(Identity("cy", "trainer"), "train") == "cy"
    assert auth.authorize("cli:root", "promote") == "cli:root"  # trusted in-process caller


def test_account_management_needs_the_admin_role_and_keeps_an_admin(repo):
    auth.add_user(repo, "root-admin", "admin", PW, "cli:test")
    assert not auth.needs_first_admin(repo)
    with pytest.raises(auth.PermissionDenied):
        auth.add_user(repo, "mallory", "admin", PW, Identity("mallory", "trainer"))
    with pytest.raises(auth.PermissionDenied):
        auth.set_role(repo, "root-admin", "clinician", Identity("mallory", "reviewer"))
    with pytest.raises(auth.AuthError, match="last enabled administrator"):
        auth.set_role(repo, "root-admin", "clinician", "cli:test")
    with pytest.raises(auth.AuthError, match="last enabled administrator"):
        auth.set_disabled(repo, "root-admin", True, "cli:test")
    admin = Identity("root-admin", "admin")
    auth.add_user(repo, "bo", "clinician", PW, admin)
    auth.set_role(repo, "bo", "reviewer", admin)
    assert auth.identity_for(repo, "bo").role == "reviewer"  # the new role, on the next run
    auth.set_password(repo, "bo", "another long password", Identity("bo", "reviewer"))  # their own
    with pytest.raises(auth.PermissionDenied):
        auth.set_password(repo, "root-admin", "another long password", Identity("bo", "reviewer"))
    assert auth.authenticate(repo, "bo", "another long password").name == "bo"
    from core.store.users import UserExists

    with pytest.raises(UserExists):
        auth.add_user(repo, "bo", "admin", PW, admin)


def test_auth_setting_defaults_to_sign_in_and_refuses_typos(monkeypatch):
    from core.config import get_settings

    monkeypatch.delenv("NEUROGRADE_AUTH", raising=False)
    assert get_settings().auth == "local"
    for value in ("OIDC", " off "):
        monkeypatch.setenv("NEUROGRADE_AUTH", value)
        assert get_settings().auth == value.strip().lower()
    monkeypatch.setenv("NEUROGRADE_AUTH", "of")
    with pytest.raises(ValueError, match="NEUROGRADE_AUTH"):
        get_settings()


def test_serve_refuses_a_network_bind_with_sign_in_off():
    from core.commands.serve import check_bind

    assert check_bind("off", "0.0.0.0") and check_bind("off", "::") and check_bind("off", "10.1.2.3")
    assert check_bind("off", "127.0.0.1") is None and check_bind("off", "localhost") is None
    assert check_bind("off", "::1") is None
    assert check_bind("local", "0.0.0.0") is None and check_bind("oidc", "0.0.0.0") is None


def test_cli_actor_is_the_os_user_unless_named():
    import getpass

    assert auth.cli_actor(None) == f"cli:{getpass.getuser()}"
    assert auth.cli_actor(" Dr Ada ") == "Dr Ada"


# ------------------------------------------------------------------ enforced in the core calls
def test_review_decide_refuses_a_clinician_and_records_the_identity(repo):
    from core import review

    case = repo.cases.save(
        {"modality": "MR", "shape": (1, 8, 8)},
        np.zeros((1, 8, 8), np.float32),
        [{"index": 0, "task": "tumor_type", "model_version": "t", "probabilities": [0.6, 0.3, 0.1]}],
        source="test",
    )
    (it,) = repo.cases.items(case)
    item = review.load_item(repo, it.id, "tumor_type")
    out = review.decide(repo, item, "label", Identity("cy", "clinician"), value=item.classes[0])
    assert not out.ok and "may not" in out.message
    assert repo.queue.entry(it.id, "tumor_type").status == "pending"
    out = review.decide(repo, item, "label", None, value=item.classes[0])
    assert not out.ok and "Sign in" in out.message
    out = review.decide(repo, item, "label", Identity("rita", "reviewer"), value=item.classes[0])
    assert out.ok
    assert repo.queue.entry(it.id, "tumor_type").current_label.reviewer == "rita"
    assert repo.audit.entries(action="label")[-1].actor == "rita"


def test_send_to_review_and_training_need_their_roles(repo):
    from core import review
    from core.training import job as training_job

    with pytest.raises(auth.PermissionDenied):
        review.send_to_review(repo, object(), object(), actor=None)
    with pytest.raises(auth.PermissionDenied):
        training_job.create_training_job(repo, {"task": "tumor_type"}, Identity("rita", "reviewer"))
    job = training_job.create_training_job(repo, {"task": "tumor_type"}, Identity("tom", "trainer"))
    assert repo.jobs.get(job).params["actor"] == "tom"
    assert repo.audit.entries(entity="job")[-1].actor == "tom"


def test_promote_and_rollback_need_the_admin_role(repo):
    from core.promotion import PromotionError, PromotionForbidden, promote, rollback

    for role in ("clinician", "reviewer", "trainer"):
        with pytest.raises(PromotionForbidden, match="admin"):
            promote("tumor_type", "9.9.9", Identity("x", role), repo=repo)
        with pytest.raises(PromotionForbidden):
            promote("tumor_type", "9.9.9", Identity("x", role), force=True, reason="r", repo=repo)
        with pytest.raises(PromotionForbidden):
            rollback("tumor_type", Identity("x", role), repo=repo)
    assert issubclass(PromotionForbidden, PromotionError) and issubclass(PromotionForbidden, auth.PermissionDenied)
    with pytest.raises(PromotionError) as exc:  # an admin gets past the check (unknown version)
        promote("tumor_type", "9.9.9", Identity("ada", "admin"), repo=repo)
    assert not isinstance(exc.value, PromotionForbidden)
