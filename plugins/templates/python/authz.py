"""`{{name}}`: a Wasmq authorization plugin (the `authz` hook, asked on PUBLISH
and SUBSCRIBE).

The rule it starts with, to replace with yours: nobody publishes under
`readonly/#` except clients whose id starts with `admin-`. Every other question
is answered IGNORE, so the next plugin, or the broker's `acl_nomatch`, decides.
"""

from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import (
    Action,
    AuthzResult,
    CacheLifetime_OperatorTtl,
    Client,
    Decision,
)


def answer(decision: Decision) -> AuthzResult:
    """The decision, kept by the broker for the operator's TTL (`[authz_cache]`).
    The other `CacheLifetime_*` cases of the generated types (none, seconds,
    connection) say otherwise."""
    return AuthzResult(decision=decision, cache=CacheLifetime_OperatorTtl())


def is_readonly(topic: str) -> bool:
    """`readonly/#` matches `readonly` itself and everything below it."""
    return topic == "readonly" or topic.startswith("readonly/")


class Authz(exports.Authz):
    def authorize(
        self, c: Client, a: Action, topic: str, qos: int, retain: bool
    ) -> AuthzResult:
        if a == Action.PUBLISH and is_readonly(topic):
            if c.client_id.startswith("admin-"):
                return answer(Decision.ALLOW)
            log.log(log.Level.INFO, f"{c.client_id} may not publish to {topic}")
            return answer(Decision.DENY)
        return answer(Decision.IGNORE)
