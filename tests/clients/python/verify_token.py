"""An independent check of a frontdoor token: PyJWT against the served JWKS, and the
`cryptography` package against the served PEM certificate. Neither is frontdoor's code.

usage: verify_token.py GOOGLE_BASE_URL TOKEN AUDIENCE
Prints the verified claims as JSON; exits non-zero if either check fails."""

import json
import sys
import urllib.request

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def main(base, token, audience):
    kid = jwt.get_unverified_header(token)["kid"]

    jwks = jwt.PyJWKClient(f"{base}/oauth2/v3/certs")
    key = jwks.get_signing_key_from_jwt(token).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=audience,
                        issuer="https://accounts.google.com")

    cert = x509.load_pem_x509_certificate(fetch(f"{base}/oauth2/v1/certs")[kid].encode())
    signed, _, signature = token.rpartition(".")
    cert.public_key().verify(jwt.utils.base64url_decode(signature), signed.encode(),
                             padding.PKCS1v15(), hashes.SHA256())
    print(json.dumps(claims, sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:])
