"""Authorization example: nobody publishes under `readonly/#` except clients
whose id starts with `admin-`, and nobody else reads `secret/#`: a subscription
to `secret/...` is denied, and so is each delivery of a `secret/...` message
through a wildcard (a `#` subscriber may subscribe, but does not get them).
Every other question is left to the next plugin (`IGNORE`).

The same behaviour as plugins/examples/rust/readonly-acl.
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
    """The decision, kept by the broker for the operator's TTL."""
    return AuthzResult(decision=decision, cache=CacheLifetime_OperatorTtl())


def is_under(root: str, topic: str) -> bool:
    """`root/#` matches `root` itself and everything below it."""
    return topic == root or topic.startswith(root + "/")


def is_admin(c: Client) -> bool:
    return c.client_id.startswith("admin-")


class Authz(exports.Authz):
    def authorize(
        self, c: Client, a: Action, topic: str, qos: int, retain: bool
    ) -> AuthzResult:
        if a == Action.PUBLISH and is_under("readonly", topic):
            if is_admin(c):
                return answer(Decision.ALLOW)
            log.log(log.Level.INFO, f"{c.client_id} may not publish to {topic}")
            return answer(Decision.DENY)
        if a == Action.SUBSCRIBE and is_under("secret", topic) and not is_admin(c):
            return answer(Decision.DENY)
        return answer(Decision.IGNORE)


class Deliver(exports.Deliver):
    """Asked for each topic a subscriber gets through a filter with `+` or `#`."""

    def authorize_delivery(
        self, c: Client, topic: str, qos: int, retain: bool
    ) -> AuthzResult:
        if is_under("secret", topic) and not is_admin(c):
            return answer(Decision.DENY)
        return answer(Decision.IGNORE)
