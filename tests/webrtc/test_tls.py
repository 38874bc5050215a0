"""`server.tls`: the server speaks HTTPS and WSS itself, with a self-signed certificate made here."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hearth.server.app import create_app
from hearth.server.errors import StartupError
from hearth.server.config import ConfigError
from hearth.server.main import ssl_context
from hearth.server.session.testing import ScriptedEngine
from tests.server_harness import free_port, make_config


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hearth.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_https_and_wss_with_the_configured_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    # Relative paths resolve against the config file's folder.
    config = make_config(tmp_path, {"server": {"tls": {"cert": "cert.pem", "key": "key.pem"}}})
    assert config.server.tls.cert == cert.resolve()
    server_tls = ssl_context(config.server.tls)
    assert server_tls is not None
    runner = web.AppRunner(create_app(config, engine_factory=lambda c, e: ScriptedEngine()))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_tls).start()
    client_tls = ssl.create_default_context(cafile=str(cert))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{port}/healthz", ssl=client_tls) as response:
                assert response.status == 200 and (await response.json())["status"] == "ok"
            async with http.ws_connect(f"wss://127.0.0.1:{port}/v1/realtime?model=m", ssl=client_tls) as ws:
                assert (await ws.receive_json())["type"] == "session.created"
            # The certificate is what the client checks: without trusting it, the handshake fails.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(f"https://127.0.0.1:{port}/healthz")
            # Plain HTTP on the TLS port gets no HTTP answer.
            with pytest.raises(aiohttp.ClientError):
                await http.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        await runner.cleanup()


def test_tls_needs_both_files_and_readable_ones(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with pytest.raises(ConfigError, match="server.tls.key: set both"):
        make_config(tmp_path, {"server": {"tls": {"cert": str(cert)}}})
    with pytest.raises(ConfigError, match="server.tls.cert: file not found"):
        make_config(tmp_path, {"server": {"tls": {"cert": "missing.pem", "key": str(key)}}})
    (tmp_path / "garbage.pem").write_text("not a key")
    config = make_config(tmp_path, {"server": {"tls": {"cert": str(cert), "key": "garbage.pem"}}})
    with pytest.raises(StartupError, match="cannot load server.tls.cert"):
        ssl_context(config.server.tls)
    assert ssl_context(make_config(tmp_path, {}).server.tls) is None
