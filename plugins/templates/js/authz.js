// `{{name}}`: a Wasmq authorization plugin (the `authz` hook, asked on PUBLISH
// and SUBSCRIBE).
//
// The rule it starts with, to replace with yours: nobody publishes under
// `readonly/#` except clients whose id starts with `admin-`. Every other
// question is answered "ignore", so the next plugin, or the broker's
// `acl_nomatch`, decides.

import { log } from "wasmq:plugin/log@0.2.0";

/**
 * The decision, kept by the broker for the operator's TTL (`[authz_cache]`).
 * `{ tag: "none" }`, `{ tag: "seconds", val: n }` or `{ tag: "connection" }`
 * say otherwise.
 */
function answer(decision) {
  return { decision, cache: { tag: "operator-ttl" } };
}

/** `readonly/#` matches `readonly` itself and everything below it. */
function isReadonly(topic) {
  return topic === "readonly" || topic.startsWith("readonly/");
}

export const authz = {
  authorize(client, action, topic, _qos, _retain) {
    if (action === "publish" && isReadonly(topic)) {
      if (client.clientId.startsWith("admin-")) {
        return answer("allow");
      }
      log("info", `${client.clientId} may not publish to ${topic}`);
      return answer("deny");
    }
    return answer("ignore");
  },
};
