// Authorization example: nobody publishes under `readonly/#` except clients
// whose id starts with `admin-`, and nobody else reads `secret/#`: a
// subscription to `secret/...` is denied, and so is each delivery of a
// `secret/...` message through a wildcard (a `#` subscriber may subscribe, but
// does not get them). Every other question is left to the next plugin
// ('ignore').
//
// The same behaviour as plugins/examples/rust/readonly-acl.

import { log } from "wasmq:plugin/log@0.2.0";

/** The decision, kept by the broker for the operator's TTL (an `authz-result`). */
function answer(decision) {
  return { decision, cache: { tag: "operator-ttl" } };
}

/** `root/#` matches `root` itself and everything below it. */
function isUnder(root, topic) {
  return topic === root || topic.startsWith(root + "/");
}

function isAdmin(client) {
  return client.clientId.startsWith("admin-");
}

export const authz = {
  authorize(client, action, topic, _qos, _retain) {
    if (action === "publish" && isUnder("readonly", topic)) {
      if (isAdmin(client)) {
        return answer("allow");
      }
      log("info", `${client.clientId} may not publish to ${topic}`);
      return answer("deny");
    }
    if (action === "subscribe" && isUnder("secret", topic) && !isAdmin(client)) {
      return answer("deny");
    }
    return answer("ignore");
  },
};

/** Asked for each topic a subscriber gets through a filter with `+` or `#`. */
export const deliver = {
  authorizeDelivery(client, topic, _qos, _retain) {
    if (isUnder("secret", topic) && !isAdmin(client)) {
      return answer("deny");
    }
    return answer("ignore");
  },
};
