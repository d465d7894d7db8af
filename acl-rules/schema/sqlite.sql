-- The EMQX 4.x tables, in SQLite's types, created when missing.

CREATE TABLE IF NOT EXISTS mqtt_acl (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  allow INTEGER DEFAULT NULL,         -- 0: deny, 1: allow
  ipaddr VARCHAR(60) DEFAULT NULL,    -- an address or a CIDR, IPv4 or IPv6
  username VARCHAR(100) DEFAULT NULL, -- '$all' matches every client
  clientid VARCHAR(100) DEFAULT NULL,
  access INTEGER NOT NULL,            -- 1: subscribe, 2: publish, 3: both
  topic VARCHAR(100) NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS mqtt_user (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  username VARCHAR(100) DEFAULT NULL UNIQUE,
  password VARCHAR(100) DEFAULT NULL,
  salt VARCHAR(35) DEFAULT NULL,
  is_superuser TINYINT(1) DEFAULT 0,
  created DATETIME DEFAULT NULL
);

-- SCRAM-SHA-256 credentials (the scram-sha256 plugin, MQTT 5 enhanced authentication):
-- RFC 5802's salt, iteration count, StoredKey and ServerKey, base64, never the password.
CREATE TABLE IF NOT EXISTS mqtt_scram_user (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  username VARCHAR(100) NOT NULL UNIQUE,
  salt VARCHAR(64) NOT NULL,
  iterations INTEGER NOT NULL,
  stored_key VARCHAR(64) NOT NULL,
  server_key VARCHAR(64) NOT NULL,
  is_superuser TINYINT(1) DEFAULT 0,
  created DATETIME DEFAULT NULL
);
