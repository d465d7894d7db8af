"""`{{name}}`: a Wasmq authentication plugin (the `authn` hook, asked once per
CONNECT).

The rule it starts with, to replace with yours: a client that sends no user
name is denied (the reason goes to the broker's log, never to the client); a
user named in the setting `superuser` is let in as a superuser when its
password is the setting `superuser_password`; every other client is answered
IGNORE, so the next plugin, or the broker's `allow_anonymous`, decides.
"""

from typing import Optional

from wit_world import exports
from wit_world.imports import config
from wit_world.imports.types import AuthResult, Client, Decision


class Authn(exports.Authn):
    def authenticate(self, c: Client, password: Optional[bytes]) -> AuthResult:
        if c.username is None:
            return AuthResult(Decision.DENY, False, "no user name")
        if config.get("superuser") == c.username:
            expected = (config.get("superuser_password") or "").encode()
            if password == expected:
                return AuthResult(Decision.ALLOW, True, None)
            return AuthResult(Decision.DENY, False, f"wrong password for {c.username}")
        return AuthResult(Decision.IGNORE, False, None)
