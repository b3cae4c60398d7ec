"""A registry token server for tests, as Docker Hub, GHCR or Harbor run one.

The registry answers an unauthenticated request with a bearer challenge
naming this server; a client fetches a token here (with basic credentials)
and retries with `Authorization: Bearer <token>`. Tokens are JWTs signed
with a key whose self-signed certificate the registry trusts
(`rootcertbundle`), carried in the `x5c` header as the distribution
registry expects.

Usage: token_server.py CERT_PATH USER PASSWORD ISSUER SERVICE
Writes the certificate, then prints the port it listens on.
"""

import base64
import datetime
import http.server
import json
import secrets
import sys
import time
import urllib.parse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

cert_path, user, password, issuer, service = sys.argv[1:6]

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(minutes=5))
    .not_valid_after(now + datetime.timedelta(days=1))
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .sign(key, hashes.SHA256())
)
with open(cert_path, "wb") as f:
    f.write(cert.public_bytes(serialization.Encoding.PEM))
x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Tokens(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.end_headers()
            return
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        access = []
        for scope in query.get("scope", []):
            kind, repository, actions = scope.split(":")
            access.append({"type": kind, "name": repository, "actions": actions.split(",")})
        issued = int(time.time())
        claims = {
            "iss": issuer,
            "sub": user,
            "aud": service,
            "iat": issued,
            "nbf": issued - 10,
            "exp": issued + 300,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        token = jwt.encode(claims, key, algorithm="RS256", headers={"x5c": x5c})
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Tokens)
print(server.server_address[1], flush=True)
server.serve_forever()
