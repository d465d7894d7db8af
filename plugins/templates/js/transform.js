// `{{name}}`: a Wasmq transform plugin (the `transform` hook, called on every
// authorized PUBLISH before it is routed).
//
// What it starts with, to replace with yours: a message published under the
// setting `drop_prefix` (default `private/`) is dropped; every other message
// gets the MQTT 5 user property `via={{name}}`, appended after the client's own.

import { get } from "wasmq:plugin/config@0.2.0";

// Read on the first message: settings only change with a reload, which makes
// new instances.
let dropPrefix;

export const transform = {
  onPublish(_client, message) {
    dropPrefix ??= get("drop_prefix") ?? "private/";
    if (message.topic.startsWith(dropPrefix)) {
      return { tag: "drop", val: `${message.topic} is private` };
    }
    message.userProperties.push(["via", "{{name}}"]);
    return { tag: "replace", val: message };
  },
};
