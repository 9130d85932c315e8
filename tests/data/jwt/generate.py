"""Generates the test-only JWT keys (never used outside tests) and the native-verify KAT.

Run once: python3 tests/data/jwt/generate.py. The outputs are committed; rerunning changes them.
"""
import base64, json, os
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519, padding

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", "..", ".."))

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def int_bytes(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return n.to_bytes(size, "big")

def write_pem(name, key):
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    open(os.path.join(here, name), "wb").write(pem)

jwks = []
for name in ["rsa1", "rsa2"]:
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_pem(name + ".pem", k)
    pub = k.public_key().public_numbers()
    jwks.append({"kty": "RSA", "kid": name, "use": "sig", "n": b64u(int_bytes(pub.n)), "e": b64u(int_bytes(pub.e))})
for name, curve, crv, size in [("ec256", ec.SECP256R1(), "P-256", 32), ("ec384", ec.SECP384R1(), "P-384", 48), ("ec521", ec.SECP521R1(), "P-521", 66)]:
    k = ec.generate_private_key(curve)
    write_pem(name + ".pem", k)
    pub = k.public_key().public_numbers()
    jwks.append({"kty": "EC", "kid": name, "crv": crv, "x": b64u(int_bytes(pub.x, size)), "y": b64u(int_bytes(pub.y, size))})
k = ed25519.Ed25519PrivateKey.generate()
write_pem("ed25519.pem", k)
raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
jwks.append({"kty": "OKP", "kid": "ed25519", "crv": "Ed25519", "x": b64u(raw)})
secret = os.urandom(64)
open(os.path.join(here, "hmac.key"), "wb").write(secret)
jwks.append({"kty": "oct", "kid": "hmac", "k": b64u(secret)})
open(os.path.join(here, "jwks.json"), "w").write(json.dumps({"keys": jwks}, indent=1) + "\n")

# Known-answer vector for the host's native verify_signature (RSA PKCS#1 v1.5, SHA-256).
kat = os.path.join(root, "src", "filter", "kat")
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
spki = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
message = b"api-guard: known-answer check of the host's native verify_signature"
signature = k.sign(message, padding.PKCS1v15(), hashes.SHA256())
open(os.path.join(kat, "rsa_spki.der"), "wb").write(spki)
open(os.path.join(kat, "message.txt"), "wb").write(message)
open(os.path.join(kat, "rsa_sha256.sig"), "wb").write(signature)
