"""The Engine API over TLS with client certificates, as dockerd's ``--tlsverify``.

A module fixture makes, with the ``openssl`` CLI, a CA, a server certificate
for 127.0.0.1, a client certificate signed by the CA, and a second CA (that
the server does not trust) with a client certificate of its own.  Replica 0
serves TLS with ``--tlsverify``; replica 1, of the same namespace, plain HTTP
on loopback, to check that refused clients changed nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import docker.tls
import pytest
import requests

from tests.engine_api import ROOT, ApiReplicas, free_port
from tests.redisproc import RedisProcess

pytestmark = pytest.mark.slow

EXIT_USAGE = 125


# --- certificates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path            # the CA that signs the server's and the good client's certificates
    server_cert: Path
    server_key: Path
    cert: Path          # the good client's
    key: Path
    rogue_ca: Path      # a CA the server does not trust...
    rogue_cert: Path    # ...and a client certificate it signed
    rogue_key: Path
    client_dir: Path    # DOCKER_CERT_PATH layout: ca.pem, cert.pem, key.pem
    rogue_dir: Path     # the same with the rogue client certificate (and the real ca.pem, to trust the server)


def openssl_binary() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise RuntimeError("the openssl CLI is not installed: the Engine API TLS tests make their certificates "
                           "with it (apt-get install openssl)")
    return found


def _openssl(*args: str | Path, cwd: Path) -> None:
    res = subprocess.run([openssl_binary(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"openssl {' '.join(map(str, args))}: rc={res.returncode}\n{res.stdout}{res.stderr}"


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

_CA_CONF = """\
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = {cn}
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_LEAF_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {eku}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
{san}
"""


def _make_ca(d: Path, name: str) -> tuple[Path, Path]:
    conf = d / f"{name}.cnf"
    conf.write_text(_CA_CONF.format(cn=f"statestore test {name}"))
    cert, key = d / f"{name}.pem", d / f"{name}-key.pem"
    _openssl("req", "-x509", *_EC, "-days", "2", "-config", conf, "-keyout", key, "-out", cert, cwd=d)
    return cert, key


def _make_leaf(d: Path, name: str, cn: str, ca: tuple[Path, Path], eku: str, san: str = "") -> tuple[Path, Path]:
    cert, key, csr, ext = d / f"{name}-cert.pem", d / f"{name}-key.pem", d / f"{name}.csr", d / f"{name}.ext"
    _openssl("req", "-new", *_EC, "-subj", f"/CN={cn}", "-keyout", key, "-out", csr, cwd=d)
    ext.write_text(_LEAF_EXT.format(eku=eku, san=f"subjectAltName = {san}" if san else ""))
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
             str(int.from_bytes(os.urandom(8), "big")), "-days", "2", "-extfile", ext, "-out", cert, cwd=d)
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("engine-api-certs")
    ca = _make_ca(d, "ca")
    server = _make_leaf(d, "server", "127.0.0.1", ca, "serverAuth", "IP:127.0.0.1, DNS:localhost")
    client = _make_leaf(d, "client", "statestore-test-client", ca, "clientAuth")
    rogue_ca = _make_ca(d, "rogue-ca")
    rogue = _make_leaf(d, "rogue", "statestore-test-rogue", rogue_ca, "clientAuth")
    dirs = []
    for sub, (cert, key) in (("client", client), ("rogue", rogue)):
        cd = d / f"{sub}-dir"
        cd.mkdir()
        shutil.copy(ca[0], cd / "ca.pem")
        shutil.copy(cert, cd / "cert.pem")
        shutil.copy(key, cd / "key.pem")
        dirs.append(cd)
    # the chains are what they should be (so a failure below is the server's, not the fixture's)
    for cert, issuer in ((server[0], ca[0]), (client[0], ca[0]), (rogue[0], rogue_ca[0])):
        _openssl("verify", "-CAfile", issuer, cert, cwd=d)
    res = subprocess.run([openssl_binary(), "verify", "-CAfile", str(ca[0]), str(rogue[0])],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0, "the rogue client certificate must not verify against the real CA"
    return Certs(d, ca[0], server[0], server[1], client[0], client[1], rogue_ca[0], rogue[0], rogue[1], *dirs)


def tls_args(c: Certs) -> tuple[str, ...]:
    return ("--tlsverify", f"--tlscacert={c.ca}", f"--tlscert={c.server_cert}", f"--tlskey={c.server_key}")


# --- replicas -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(redis_proc: RedisProcess, certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiReplicas]:
    """Replica 0: TLS with client verification on 127.0.0.1; replica 1: plain HTTP on loopback."""
    tmp = tmp_path_factory.mktemp("engine-api-tls")
    r = ApiReplicas(redis_proc.url, f"api-tls-{os.getpid()}", tmp)
    try:
        r.start(tls_args=tls_args(certs))
        r.start()
        assert "(TLS)" in r.log(0) and "(TLS)" not in r.log(1)
        yield r
    finally:
        r.close()


def tls_flags(c: Certs) -> tuple[str, ...]:
    return ("--tlsverify", "--tlscacert", str(c.ca), "--tlscert", str(c.cert), "--tlskey", str(c.key))


def plain_names(api: ApiReplicas) -> list[str]:
    """Every container's name, through the plain loopback replica 1."""
    res = api.docker(1, "ps", "-a", "--format", "{{.Names}}")
    return sorted(ln for ln in res.stdout.splitlines() if ln)


@pytest.fixture
def no_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets these replace the SDK's TLSConfig(ca_cert=...) (psf/requests#3829)."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def sdk_client(host: str, c: Certs, cert: Path | None = None, key: Path | None = None) -> docker.DockerClient:
    tls = docker.tls.TLSConfig(client_cert=(str(cert or c.cert), str(key or c.key)), ca_cert=str(c.ca), verify=True)
    return docker.DockerClient(base_url=host, tls=tls, timeout=20)


# --- the tests ------------------------------------------------------------------------------------


def test_the_docker_cli_with_a_client_certificate_works(api: ApiReplicas, certs: Certs) -> None:
    flags = tls_flags(certs)
    cid = api.docker(0, *flags, "create", "--name", "tls-web", "--label", "via=tls", "busybox").stdout.strip()
    assert len(cid) == 64
    ps = api.docker(0, *flags, "ps", "-a", "--filter", "label=via=tls", "--format", "{{.ID}} {{.Names}} {{.State}}")
    assert ps.stdout.split() == [cid[:12], "tls-web", "created"]
    doc = json.loads(api.docker(0, *flags, "inspect", "tls-web").stdout)
    assert len(doc) == 1 and doc[0]["Id"] == cid and doc[0]["Config"]["Labels"] == {"via": "tls"}
    # the same with DOCKER_CERT_PATH and DOCKER_TLS_VERIFY (the CLI's ca.pem/cert.pem/key.pem names)
    env = {"DOCKER_CERT_PATH": str(certs.client_dir), "DOCKER_TLS_VERIFY": "1"}
    api.docker(0, "start", "tls-web", env=env)
    assert api.docker(0, "ps", "--filter", "name=^tls-web$", "--format", "{{.State}}", env=env).stdout.strip() \
        == "running"
    out = api.docker(0, "version", "--format", "{{.Server.APIVersion}}", env=env)
    assert out.stdout.strip() == "1.50"
    # what TLS did, the plain replica of the namespace sees
    assert json.loads(api.docker(1, "inspect", "tls-web").stdout)[0]["State"]["Running"] is True
    api.docker(0, *flags, "rm", "-f", "tls-web")
    assert "tls-web" not in plain_names(api)


@pytest.mark.parametrize("how", ["no-client-cert", "rogue-client-cert", "rogue-cert-path", "plain-http"])
def test_the_docker_cli_without_a_trusted_client_certificate_is_refused(api: ApiReplicas, certs: Certs,
                                                                         how: str) -> None:
    name = f"refused-{how}"
    before = plain_names(api)
    env: dict[str, str] = {}
    if how == "no-client-cert":
        flags: tuple[str, ...] = ("--tlsverify", "--tlscacert", str(certs.ca))
    elif how == "rogue-client-cert":
        flags = ("--tlsverify", "--tlscacert", str(certs.ca), "--tlscert", str(certs.rogue_cert),
                 "--tlskey", str(certs.rogue_key))
    elif how == "rogue-cert-path":
        flags, env = (), {"DOCKER_CERT_PATH": str(certs.rogue_dir), "DOCKER_TLS_VERIFY": "1"}
    else:
        flags = ()
    for args in (("create", "--name", name, "busybox"), ("ps", "-a")):
        res = api.docker(0, *flags, *args, check=False, env=env, timeout=30)
        assert res.returncode != 0, f"{how}: docker {' '.join(args)} succeeded:\n{res.stdout}{res.stderr}"
        assert res.stdout.strip() == "" and res.stderr.strip() != ""
        # refused in the TLS handshake: the CLI's connection error, never a daemon's answer ("Error response from
        # daemon"); the words after it are "EOF" or "connection reset" (asyncio sends no TLS alert: gh-98078)
        assert res.stderr.startswith("error during connect: "), res.stderr
    assert plain_names(api) == before and name not in before
    # and the server still serves a trusted client afterwards
    assert api.docker(0, *tls_flags(certs), "ps", "-a", "--format", "{{.Names}}").returncode == 0


def test_the_sdk_with_a_client_certificate_works(api: ApiReplicas, certs: Certs, no_ca_bundle: None) -> None:
    client = sdk_client(api.hosts[0], certs)
    try:
        assert client.api.base_url.startswith("https://127.0.0.1:")
        assert client.ping() is True and client.version()["ApiVersion"] == "1.50"
        c = client.containers.run("busybox", detach=True, name="tls-sdk", labels={"via": "sdk"})
        assert client.containers.get("tls-sdk").status == "running"
        assert [x.name for x in client.containers.list(filters={"label": "via=sdk"})] == ["tls-sdk"]
        # the plain replica sees it
        assert json.loads(api.docker(1, "inspect", "tls-sdk").stdout)[0]["Id"] == c.id
        c.stop(timeout=1)
        c.reload()
        assert c.status == "exited"
        c.remove()
        with pytest.raises(docker.errors.NotFound):
            client.containers.get("tls-sdk")
    finally:
        client.close()


def test_the_sdk_with_the_rogue_certificate_is_refused(api: ApiReplicas, certs: Certs, no_ca_bundle: None) -> None:
    before = plain_names(api)
    with pytest.raises(docker.errors.DockerException) as ei:  # the SDK's first call: GET /version (version=auto)
        sdk_client(api.hosts[0], certs, certs.rogue_cert, certs.rogue_key)
    assert "Error while fetching server API version" in str(ei.value)
    assert isinstance(ei.value.__cause__, requests.exceptions.ConnectionError)  # SSLError is one
    # with a fixed version the SDK calls nothing up front: then the create itself is refused
    tls = docker.tls.TLSConfig(client_cert=(str(certs.rogue_cert), str(certs.rogue_key)), ca_cert=str(certs.ca),
                               verify=True)
    client = docker.DockerClient(base_url=api.hosts[0], tls=tls, version="1.45", timeout=20)
    try:
        for call in (client.ping, lambda: client.containers.create("busybox", name="tls-rogue")):
            with pytest.raises(requests.exceptions.ConnectionError):
                call()
    finally:
        client.close()
    assert plain_names(api) == before and "tls-rogue" not in before


def _daemon(api: ApiReplicas, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STATESTORE_REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "statestore", "--redis-url", api.url, "--namespace", api.namespace,
                           "daemon", "--replica-id=tlscheck", *args],
                          capture_output=True, text=True, timeout=30, env=env)


def test_tlsverify_on_a_non_loopback_address_is_served(api: ApiReplicas, certs: Certs, no_ca_bundle: None) -> None:
    port = free_port()
    i = len(api.procs)
    api.start(f"--listen=tcp://0.0.0.0:{port}", tls_args=tls_args(certs))
    deadline = time.monotonic() + 30
    while f"Engine API listening on tcp://0.0.0.0:{port} (TLS)" not in api.log(i):
        assert api.procs[i].poll() is None and time.monotonic() < deadline, api.log(i)
        time.sleep(0.05)
    host = f"tcp://127.0.0.1:{port}"
    client = sdk_client(host, certs)
    try:
        assert client.ping() is True
        client.containers.create("busybox", name="tls-wide")
    finally:
        client.close()
    res = subprocess.run([api.docker_bin, "--config", str(api.config), "-H", host, *tls_flags(certs),
                          "inspect", "--format", "{{.Name}}", "tls-wide"],
                         capture_output=True, text=True, timeout=30,
                         env={k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")})
    assert res.returncode == 0 and res.stdout.strip() == "/tls-wide", res.stderr
    plain = subprocess.run([api.docker_bin, "--config", str(api.config), "-H", host, "ps"],
                           capture_output=True, text=True, timeout=30,
                           env={k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")})
    assert plain.returncode != 0  # TLS only, there too
    assert "tls-wide" in plain_names(api)
    api.docker(1, "rm", "tls-wide")


@pytest.mark.parametrize("case", ["verify-without-cacert", "missing-cert-file", "cert-without-tls",
                                  "key-without-tls", "cacert-without-tls", "tls-without-cert",
                                  "missing-cacert-file", "key-does-not-match"])
def test_bad_tls_options_are_usage_errors(api: ApiReplicas, certs: Certs, case: str) -> None:
    listen = f"--listen=tcp://127.0.0.1:{free_port()}"
    cert, key, ca = f"--tlscert={certs.server_cert}", f"--tlskey={certs.server_key}", f"--tlscacert={certs.ca}"
    missing = str(certs.dir / "no-such-cert.pem")
    args, words = {
        "verify-without-cacert": (("--tlsverify", cert, key), "--tlsverify needs --tlscacert"),
        "missing-cert-file": (("--tlsverify", ca, f"--tlscert={missing}", key),
                              f"--tlscert: open {missing}: no such file or directory"),
        "cert-without-tls": ((cert,), "need --tls or --tlsverify"),
        "key-without-tls": ((key,), "need --tls or --tlsverify"),
        "cacert-without-tls": ((ca,), "need --tls or --tlsverify"),
        "tls-without-cert": (("--tls",), "need --tlscert and --tlskey"),
        "missing-cacert-file": (("--tlsverify", f"--tlscacert={missing}", cert, key),
                                f"--tlscacert: open {missing}: no such file or directory"),
        "key-does-not-match": (("--tls", f"--tlscert={certs.cert}", key), "cannot load the TLS certificates"),
    }[case]
    res = _daemon(api, listen, *args)
    assert res.returncode == EXIT_USAGE, f"{case}: rc={res.returncode}\n{res.stderr}"
    assert res.stderr.startswith("Error: ") and words in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "Engine API listening" not in res.stderr


@pytest.mark.parametrize("option", ["--tlscert", "--tlskey", "--tlscacert"])
def test_a_missing_tls_file_is_named_in_the_error(api: ApiReplicas, certs: Certs, option: str) -> None:
    files = {"--tlscert": str(certs.server_cert), "--tlskey": str(certs.server_key), "--tlscacert": str(certs.ca)}
    files[option] = str(certs.dir / f"missing{option.removeprefix('--tls')}.pem")
    res = _daemon(api, f"--listen=tcp://127.0.0.1:{free_port()}", "--tlsverify",
                  *(f"{k}={v}" for k, v in files.items()))
    assert res.returncode == EXIT_USAGE
    assert files[option] in res.stderr, res.stderr  # as dockerd: "open /path/cert.pem: no such file or directory"
