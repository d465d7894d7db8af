-- The rules a database created by Wasmq starts with, inserted only when mqtt_acl was
-- just created. Rules are checked highest id first, the first match wins; a request no
-- rule matches goes to [plugins] acl_nomatch ("deny" by default). See docs/acl.md.
--
-- 1: every client may publish and subscribe to every topic; `#` does not match topics
--    that start with `$`, so $SYS (and any other $-topic) is not covered.
-- 2, 3: clients on the loopback address (IPv4, IPv6) may subscribe to $SYS/#.
-- Nothing allows publishing to $SYS or subscribing to it from elsewhere: denied.

INSERT INTO mqtt_acl (allow, ipaddr, username, clientid, access, topic) VALUES
  (1, NULL, '$all', NULL, 3, '#'),
  (1, '127.0.0.1', NULL, NULL, 1, '$SYS/#'),
  (1, '::1', NULL, NULL, 1, '$SYS/#');
