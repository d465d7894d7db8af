"""`auth-challenge`: a Wasmq enhanced authentication plugin (the `auth` hook: MQTT 5
AUTH packets, asked at each step of the exchange after a CONNECT that names its
method).

The method it starts with, `demo-challenge`, to replace with yours: the broker
sends the client a fresh random nonce (AUTH 0x18); the client answers
`NONCE:SECRET`, where SECRET is the setting `secret_USER` for its CONNECT's User
Name. The nonce travels to the second step in the exchange's state (instances
remember nothing between calls), so an answer to another exchange's challenge
is refused. Other methods are left to the next plugin.

The secret is sent as it is, as a CONNECT password would be (use TLS): a real
method answers a keyed hash of the nonce instead (HMAC, SCRAM). `hashlib` and
`hmac` work here when imported at the top of this module, with `warnings`, which
`hmac` imports late (componentize-py keeps only what is imported when it
builds). The template uses no hash because it is the same in Rust and
JavaScript, and JavaScript's runtime offers none that a hook, which answers at
once, can wait for.

What `wasmq plugin new --hook auth --lang python` writes, kept as an example:
the same behaviour as plugins/examples/rust/auth-challenge.
"""

import secrets
from typing import List, Optional

from wit_world import exports
from wit_world.imports import config
from wit_world.imports.types import (
    AuthChallenge,
    AuthStep,
    AuthStep_Continue,
    AuthStep_Failure,
    AuthStep_Ignore,
    AuthStep_Success,
    AuthSuccess,
    Client,
)

# The Authentication Method this plugin answers for.
METHOD = "demo-challenge"


class Auth(exports.Auth):
    def methods(self) -> List[str]:
        return [METHOD]

    def start(self, c: Client, method: str, data: Optional[bytes]) -> AuthStep:
        if method != METHOD:
            return AuthStep_Ignore()
        # Authorization keys on the User Name: it is the identity this exchange proves.
        if c.username is None:
            return AuthStep_Failure("no user name")
        nonce = secrets.token_hex(16).encode()
        return AuthStep_Continue(AuthChallenge(data=nonce, state=nonce))

    def step(
        self, c: Client, method: str, data: Optional[bytes], state: bytes
    ) -> AuthStep:
        username = c.username or ""
        nonce, colon, secret = (data or b"").decode(errors="replace").partition(":")
        if not colon:
            return AuthStep_Failure("the answer is not NONCE:SECRET")
        if nonce.encode() != state:
            return AuthStep_Failure("the answer is to another challenge")
        expected = config.get(f"secret_{username}")
        if expected is None:
            return AuthStep_Failure(f"no secret_{username} setting")
        if expected != secret:
            return AuthStep_Failure(f"wrong secret for {username}")
        return AuthStep_Success(AuthSuccess(data=None, superuser=False))
