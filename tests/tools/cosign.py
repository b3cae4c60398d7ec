"""Cosign's key-based signatures made and checked with Python's
`cryptography` and the registry's HTTP API: an implementation of the format
that is not Plumbline's (payload, `sha256-<hex>.sig` tag, signature
annotation), for the tests.

  cosign.py keygen DIR
  cosign.py sign HOST REPO DIGEST KEY [--names DIGEST] [--tamper]
  cosign.py verify HOST REPO DIGEST PUBLIC_KEY
"""

import base64
import hashlib
import json
import sys
import urllib.request
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def keygen(folder):
    key = ec.generate_private_key(ec.SECP256R1())
    Path(folder, "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    Path(folder, "pub.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )


def request(method, url, data=None, content_type=None):
    req = urllib.request.Request(url, data=data, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    if method == "GET":
        req.add_header("Accept", MANIFEST)
    with urllib.request.urlopen(req) as response:
        return response.read(), response.headers


def put_blob(host, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, headers = request("POST", f"http://{host}/v2/{repo}/blobs/uploads/", b"")
    location = headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    separator = "&" if "?" in location else "?"
    request("PUT", f"{location}{separator}digest={digest}", data, "application/octet-stream")
    return {"mediaType": "", "digest": digest, "size": len(data)}


def sign(host, repo, digest, key_file, names=None, tamper=False):
    key = serialization.load_pem_private_key(Path(key_file).read_bytes(), None)
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": f"{host}/{repo}"},
                "image": {"docker-manifest-digest": names or digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    ).encode()
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    if tamper:
        payload = payload.replace(b"cosign container", b"cosign-container")
    layer = put_blob(host, repo, payload)
    layer["mediaType"] = SIMPLE_SIGNING
    layer["annotations"] = {SIGNATURE: base64.b64encode(signature).decode()}
    config = put_blob(host, repo, b"{}")
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": [layer]}
    tag = digest.replace(":", "-", 1) + ".sig"
    request("PUT", f"http://{host}/v2/{repo}/manifests/{tag}", json.dumps(manifest).encode(), MANIFEST)


def verify(host, repo, digest, public_file):
    public = serialization.load_pem_public_key(Path(public_file).read_bytes())
    tag = digest.replace(":", "-", 1) + ".sig"
    manifest = json.loads(request("GET", f"http://{host}/v2/{repo}/manifests/{tag}")[0])
    for layer in manifest["layers"]:
        if layer["mediaType"] != SIMPLE_SIGNING:
            continue
        payload, _ = request("GET", f"http://{host}/v2/{repo}/blobs/{layer['digest']}")
        signature = base64.b64decode(layer["annotations"][SIGNATURE])
        try:
            public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        claims = json.loads(payload)["critical"]
        if claims["image"]["docker-manifest-digest"] == digest and claims["type"] == "cosign container image signature":
            print("verified")
            return
    sys.exit("no signature verifies")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "keygen":
        keygen(*args)
    elif command == "sign":
        names = args[args.index("--names") + 1] if "--names" in args else None
        positional = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or args[i - 1] != "--names")]
        sign(*positional[:4], names=names, tamper="--tamper" in args)
    elif command == "verify":
        verify(*args)
    else:
        sys.exit(f"unknown command {command}")
