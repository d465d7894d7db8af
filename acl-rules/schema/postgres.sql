-- The EMQX 4.x tables (emqx_auth_pgsql's sample schema), created when missing.
-- is_superuser is a boolean as in EMQX's PostgreSQL schema; the sql capability reads it
-- as the integer 0 or 1, as on the other databases.

CREATE TABLE IF NOT EXISTS mqtt_acl (
  id SERIAL PRIMARY KEY,
  allow INTEGER,
  ipaddr CHARACTER VARYING(60),
  username CHARACTER VARYING(100),
  clientid CHARACTER VARYING(100),
  access INTEGER NOT NULL,
  topic CHARACTER VARYING(100) NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS mqtt_user (
  id SERIAL PRIMARY KEY,
  username CHARACTER VARYING(100) UNIQUE,
  password CHARACTER VARYING(100),
  salt CHARACTER VARYING(40),
  is_superuser BOOLEAN DEFAULT FALSE,
  created TIMESTAMP DEFAULT NULL
);

-- SCRAM-SHA-256 credentials (the scram-sha256 plugin, MQTT 5 enhanced authentication):
-- RFC 5802's salt, iteration count, StoredKey and ServerKey, base64, never the password.
CREATE TABLE IF NOT EXISTS mqtt_scram_user (
  id SERIAL PRIMARY KEY,
  username CHARACTER VARYING(100) NOT NULL UNIQUE,
  salt CHARACTER VARYING(64) NOT NULL,
  iterations INTEGER NOT NULL,
  stored_key CHARACTER VARYING(64) NOT NULL,
  server_key CHARACTER VARYING(64) NOT NULL,
  is_superuser SMALLINT DEFAULT 0,
  created TIMESTAMP DEFAULT NULL
);
