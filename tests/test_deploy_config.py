"""deploy/nginx-neurograde.conf: TLS only, the security headers on every location, Streamlit's
websocket upgrade, the app reached on loopback only; `nginx -t` on it where nginx is installed."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "deploy" / "nginx-neurograde.conf"


def _tokens(text: str):
    for m in re.finditer(r'#[^\n]*|"((?:\\.|[^"\\])*)"|\'((?:\\.|[^\'\\])*)\'|([{};])|([^\s{};"\'#]+)', text):
        if m.group(0).startswith("#"):
            continue
        if m.group(3):
            yield m.group(3), True
        else:
            value = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(4)
            yield value, False


def parse(text: str) -> list:
    """[(name, [args], children or None)] of an nginx configuration (children: the block's list)."""
    stack, current, words = [], [], []
    for tok, punct in _tokens(text):
        if not punct:
            words.append(tok)
        elif tok == ";":
            current.append((words[0], words[1:], None))
            words = []
        elif tok == "{":
            block = []
            current.append((words[0], words[1:], block))
            stack.append(current)
            current, words = block, []
        else:
            assert not words, f"unterminated directive {words}"
            current = stack.pop()
    assert not stack and not words, "unbalanced braces"
    return current


def find(block: list, name: str) -> list:
    return [d for d in block if d[0] == name]


def args(block: list, name: str) -> list[list[str]]:
    return [d[1] for d in find(block, name)]


@pytest.fixture(scope="module")
def conf() -> list:
    return parse(CONF.read_text())


def _servers(conf):
    servers = find(conf, "server")
    tls = [s for s in servers if any("443" in a[0] and "ssl" in a for a in args(s[2], "listen"))]
    plain = [s for s in servers if s not in tls]
    return tls, plain


def test_plain_http_only_redirects_to_https(conf):
    tls, plain = _servers(conf)
    assert len(tls) == 1 and plain
    for server in plain:
        body = server[2]
        assert all("ssl" not in a for a in args(body, "listen"))
        assert args(body, "return") == [["301", "https://$host$request_uri"]]
        assert not find(body, "location") and not find(body, "proxy_pass")


def test_tls_settings(conf):
    (server,), _ = _servers(conf)
    body = server[2]
    assert args(body, "ssl_certificate") and args(body, "ssl_certificate_key")
    (protocols,) = args(body, "ssl_protocols")
    assert set(protocols) <= {"TLSv1.2", "TLSv1.3"} and "TLSv1.3" in protocols
    (ciphers,) = args(body, "ssl_ciphers")
    assert all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in ciphers[0].split(":"))
    assert args(body, "ssl_session_tickets") == [["off"]]
    assert args(body, "server_tokens") == [["off"]]


def test_security_headers_on_every_location(conf):
    (server,), _ = _servers(conf)
    body = server[2]
    headers = {a[0].lower(): a[1:] for a in args(body, "add_header")}
    assert all(rest[-1] == "always" for rest in headers.values()), "headers must go on error pages too"
    value = {k: v[0] for k, v in headers.items()}
    csp = {d.split()[0]: d.split()[1:] for d in value["content-security-policy"].split(";") if d.strip()}
    assert csp["default-src"] == ["'self'"] and csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'self'"] and csp["base-uri"] == ["'self'"]
    assert csp["form-action"] == ["'self'"] and "'unsafe-eval'" not in csp["script-src"]
    assert all("*" not in v and "http:" not in v for v in csp.values())
    assert value["x-frame-options"] in ("DENY", "SAMEORIGIN")
    assert value["x-content-type-options"] == "nosniff"
    assert re.match(r"max-age=(\d+)", value["strict-transport-security"])
    assert int(re.match(r"max-age=(\d+)", value["strict-transport-security"]).group(1)) >= 31536000
    assert "referrer-policy" in value
    locations = find(body, "location")
    assert locations
    for loc in locations:  # an add_header in a location would drop every inherited one
        assert not find(loc[2], "add_header"), loc[1]


def test_streamlit_websocket_is_upgraded_and_the_app_is_on_loopback(conf):
    (server,), _ = _servers(conf)
    (mapping,) = find(conf, "map")
    assert mapping[1] == ["$http_upgrade", "$connection_upgrade"]
    (upstream,) = find(conf, "upstream")
    backends = [a[0] for a in args(upstream[2], "server")]
    assert backends and all(b.startswith(("127.0.0.1:", "[::1]:", "localhost:", "unix:")) for b in backends)
    locations = {loc[1][-1]: loc[2] for loc in find(server[2], "location")}
    ws = locations["/_stcore/stream"]
    assert args(ws, "proxy_pass") == [[f"http://{upstream[1][0]}"]]
    assert args(ws, "proxy_http_version") == [["1.1"]]
    set_headers = {a[0].lower(): a[1] for a in args(ws, "proxy_set_header")}
    assert set_headers["upgrade"] == "$http_upgrade" and set_headers["connection"] == "$connection_upgrade"
    assert int(args(ws, "proxy_read_timeout")[0][0].rstrip("s")) >= 3600
    root = locations["/"]
    assert args(root, "proxy_pass") == [[f"http://{upstream[1][0]}"]]
    assert {a[0].lower() for a in args(root, "proxy_set_header")} >= {"host", "x-forwarded-for", "x-forwarded-proto"}


def test_readme_documents_the_deployment():
    readme = (REPO / "README.md").read_text()
    assert "deploy/nginx-neurograde.conf" in readme
    assert "python -m core users add" in readme


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "neurograde.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    crt, pem = tmp / "fullchain.pem", tmp / "privkey.pem"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return crt, pem


@pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
    reason="nginx is not installed (apt-get install nginx-light)",
)
def test_nginx_accepts_the_config(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    crt, pem = _self_signed(tmp_path)
    site = (
        CONF.read_text()
        .replace("/etc/ssl/neurograde/fullchain.pem", str(crt))
        .replace("/etc/ssl/neurograde/privkey.pem", str(pem))
    )
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n  proxy_temp_path {tmp_path}/proxy;\n"
        f"  include {tmp_path}/site.conf;\n}}\n"
    )
    r = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr and "test is successful" in r.stderr
