"""A real SMTP server for keyrot's tests (aiosmtpd), storing what it gets.

    python smtp_server.py serve --port PORT --dir DIR [--tls none|starttls|implicit]
        [--cert CERT --key KEY] [--user USER --password-file FILE]
        [--reject ADDRESS]... [--tempfail N]
    python smtp_server.py make-cert DIR

`serve` listens on 127.0.0.1:PORT and prints "listening on 127.0.0.1:PORT"
on stdout once it accepts connections. Each message it accepts is stored as
DIR/accepted/NNNNNN.eml (the raw bytes as received) and NNNNNN.json (the
envelope: MAIL FROM and RCPT TOs, whether the session used TLS, who
authenticated, the top-level headers and every non-multipart part, decoded).
The first N messages (--tempfail) are answered 451 at the end of DATA and
stored the same way under DIR/tempfailed/. RCPT TO an address given with
--reject is answered 550. With --user, AUTH (PLAIN or LOGIN) is required, and
offered only after STARTTLS. `make-cert` writes a private CA (ca.pem) and a
certificate for 127.0.0.1 and localhost signed by it (cert.pem, key.pem).
"""

import argparse
import datetime
import email
import email.policy
import json
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def store(root, sub, server, session, envelope):
    """Writes one message and its envelope under root/sub, atomically."""
    d = os.path.join(root, sub)
    os.makedirs(d, exist_ok=True)
    n = len([f for f in os.listdir(d) if f.endswith(".json")]) + 1
    base = os.path.join(d, "%06d" % n)
    raw = envelope.original_content or b""
    with open(base + ".eml", "wb") as f:
        f.write(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        try:
            text = part.get_content()
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            text = "<undecodable: %s>" % e
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        parts.append({"content_type": part.get_content_type(), "text": text})
    meta = {
        "mail_from": envelope.mail_from,
        "rcpt_tos": list(envelope.rcpt_tos),
        # STARTTLS sets session.ssl; implicit TLS shows on the transport.
        "tls": session.ssl is not None
        or server.transport.get_extra_info("ssl_object") is not None,
        "auth_user": (
            session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None
        ),
        "headers": [[k, str(v)] for k, v in msg.items()],
        "parts": parts,
    }
    tmp = base + ".json.tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f)
    os.rename(tmp, base + ".json")


class Handler:
    """Stores messages; refuses some recipients; tempfails the first N."""

    def __init__(self, root, reject, tempfail):
        self.root = root
        self.reject = {a.lower() for a in reject}
        self.tempfail = tempfail

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return "550 5.1.1 <%s>: recipient address rejected" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.tempfail > 0:
            self.tempfail -= 1
            store(self.root, "tempfailed", server, session, envelope)
            return "451 4.3.0 try again later"
        store(self.root, "accepted", server, session, envelope)
        return "250 Message accepted for delivery"


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


def serve(args):
    tls_context = None
    if args.tls != "none":
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)
    kwargs = {}
    if args.user:
        with open(args.password_file) as f:
            password = f.read().rstrip("\n")
        kwargs.update(
            authenticator=make_authenticator(args.user, password),
            auth_required=True,
            auth_require_tls=True,
        )
    if args.tls == "starttls":
        kwargs.update(tls_context=tls_context, require_starttls=True)
    elif args.tls == "implicit":
        kwargs.update(ssl_context=tls_context)
    handler = Handler(args.dir, args.reject, args.tempfail)
    controller = Controller(
        handler, hostname="127.0.0.1", port=args.port, ready_timeout=30, **kwargs
    )
    controller.start()
    print("listening on 127.0.0.1:%d" % args.port, flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    while not stopping.wait(3600):
        pass
    controller.stop()


def make_cert(out):
    """A CA and a server certificate for 127.0.0.1/localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    os.makedirs(out, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyrot test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    with open(os.path.join(out, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(out, "cert.pem"), "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(os.path.join(out, "key.pem"), "wb") as f:
        f.write(
            key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--user")
    s.add_argument("--password-file")
    s.add_argument("--reject", action="append", default=[])
    s.add_argument("--tempfail", type=int, default=0)
    c = sub.add_parser("make-cert")
    c.add_argument("dir")
    args = p.parse_args()
    if args.cmd == "serve":
        serve(args)
    else:
        make_cert(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
