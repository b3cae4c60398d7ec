"""Writes the certificates the TLS tests use into the current folder:

- ca.pem / ca.key: a CA;
- server.pem / server.key: a server certificate for 127.0.0.1, CA-signed
  (``server2.*``: another one, for a renewal);
- client.pem / client.key: a client certificate the CA signed;
- rogue.pem / rogue.key: a client certificate a CA of its own signed.
"""

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def key():
    return ec.generate_private_key(ec.SECP256R1())


def name(common):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def write(stem, cert, private):
    with open(f"{stem}.pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(f"{stem}.key", "wb") as f:
        f.write(private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))


def ca(common):
    private = key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(common)).issuer_name(name(common))
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(private, hashes.SHA256())
    )
    return cert, private


def leaf(issuer, issuer_key, common, server):
    private = key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common)).issuer_name(issuer.subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), private


authority, authority_key = ca("plumbline-test-ca")
write("ca", authority, authority_key)
write("server", *leaf(authority, authority_key, "plumbline", True))
write("server2", *leaf(authority, authority_key, "plumbline-renewed", True))
write("client", *leaf(authority, authority_key, "kube-apiserver", False))
rogue, rogue_key = ca("someone-else")
write("rogue", *leaf(rogue, rogue_key, "kube-apiserver", False))
