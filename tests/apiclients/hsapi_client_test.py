"""The Headscale surface (/api/v1) driven by hsapi-client, the Headscale API client on PyPI.

Run by tests/apiclients/run.sh against a real tenscale binary, with the API key of a fresh
organization in HSAPI_API_TOKEN and the server in HSAPI_SERVER (the client's own settings).
Everything here goes through the client's own calls and models; where its models describe an
older Headscale than the JSON tenscale writes (v0.26-v0.28), this says so and does not call it:

* its PreAuthKey model reads `user` as the user's name (Headscale <= 0.25); tenscale, like
  Headscale 0.26+, writes the user object, so pre-auth keys and the nodes that carry one are
  not read through it;
* its ApiKey model requires an expiration, and a key made by tenscale's CLI never expires
  (`null`): the script first trades the bootstrap key for one that expires, as an operator
  rotating a key would, and lists keys only after that.

Exits non-zero on the first assertion that fails.
"""

import datetime
import os
import sys

from hsapi_client import APIKey, Node, Policy, User
from hsapi_client.apikeys import v1CreateApiKeyRequest, v1ExpireApiKeyRequest
from hsapi_client.config import APISettings, HTTPException
from hsapi_client.users import v1CreateUserRequest

SERVER = os.environ["HSAPI_SERVER"]
POLICY = '{"tagOwners": {"tag:ci": []}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}'


def settings(token: str) -> APISettings:
    return APISettings(server=SERVER, api_token=token)


def step(text: str) -> None:
    print(f"hsapi-client: {text}", flush=True)


def refused(call, status: int) -> str:
    """Runs `call`, which must fail with HTTP `status`; returns the error's text."""
    try:
        call()
    except HTTPException as err:
        assert err.status_code == status, f"expected {status}, got {err}"
        return err.message
    raise AssertionError(f"expected a {status} refusal, the call succeeded")


def in_days(days: int) -> datetime.datetime:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return now + datetime.timedelta(days=days)


def users(token: str) -> None:
    step("users: create, list, refuse a bad name, delete")
    made = User(settings(token)).create(v1CreateUserRequest(name="alice")).user
    assert made.name == "alice" and made.id > 0, made
    listed = User(settings(token)).list().users
    assert [u.name for u in listed] == ["alice"], listed
    message = refused(lambda: User(settings(token)).create(v1CreateUserRequest(name="Not Valid!")), 400)
    assert "name" in message, message
    # The client names the user in the path; Headscale 0.26+ (and tenscale) take its id there.
    User(settings(token)).delete(str(made.id))
    assert User(settings(token)).list().users == [], "the deleted user is still listed"


def policy(token: str) -> None:
    step("policy: set, read back, refuse a broken one")
    Policy(settings(token)).put(POLICY)
    got = Policy(settings(token)).get()
    assert got.policy["tagOwners"] == {"tag:ci": []}, got.policy
    assert got.updatedAt is not None
    refused(lambda: Policy(settings(token)).put('{"acls": [,]}'), 400)


def nodes(token: str) -> None:
    step("nodes: an empty tailnet lists none")
    assert Node(settings(token)).list().nodes == []


def api_keys(bootstrap: str) -> str:
    step("api keys: trade the CLI's never-expiring key for one that expires")
    expiration = in_days(30)
    made = APIKey(settings(bootstrap)).create(v1CreateApiKeyRequest(expiration=expiration.isoformat()))
    token = made.apiKey
    assert token.startswith("tskey-api-") and token != bootstrap, made
    APIKey(settings(token)).delete(bootstrap[: len("tskey-api-") + 8])
    refused(lambda: User(settings(bootstrap)).list(), 401)

    step("api keys: list, make a second, expire it (refused at once), delete it")
    (only,) = APIKey(settings(token)).list().apiKeys
    assert only.expiration == expiration and not only.expired, only
    assert token.startswith(only.prefix), only
    second = APIKey(settings(token)).create(v1CreateApiKeyRequest(expiration=in_days(1).isoformat())).apiKey
    assert User(settings(second)).list().users == []
    prefix = second[: len("tskey-api-") + 8]
    APIKey(settings(token)).expire(v1ExpireApiKeyRequest(prefix=prefix))
    refused(lambda: User(settings(second)).list(), 401)
    listed = {k.prefix: k for k in APIKey(settings(token)).list().apiKeys}
    assert listed[prefix].expired, listed[prefix]
    APIKey(settings(token)).delete(prefix)
    assert [k.prefix for k in APIKey(settings(token)).list().apiKeys] == [only.prefix]
    refused(lambda: APIKey(settings(token)).delete(prefix), 404)
    message = refused(lambda: APIKey(settings(token)).create(v1CreateApiKeyRequest(expiration="2020-01-01T00:00:00Z")), 400)
    assert "future" in message, message
    return token


def main() -> int:
    bootstrap = os.environ["HSAPI_API_TOKEN"]
    token = api_keys(bootstrap)
    users(token)
    policy(token)
    nodes(token)
    step("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
