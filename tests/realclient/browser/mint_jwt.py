"""What an app backend does for its logged-in user: mint a short HS256 JWT for tenscale's
POST /v1/browser-keys (the README's example; the browser test's stand-in backend runs it).
Python standard library only."""
import base64, hashlib, hmac, json, time, uuid


def mint_browser_jwt(secret: bytes, issuer: str, audience: str, namespace: str) -> str:
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": namespace, "iat": now, "exp": now + 300,
              "jti": str(uuid.uuid4())}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())
