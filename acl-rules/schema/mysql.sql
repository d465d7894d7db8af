-- The EMQX 4.x tables (emqx_auth_mysql's mqtt.sql), created when missing.
-- Columns, types and meanings are EMQX's, so an existing EMQX database works as is.

CREATE TABLE IF NOT EXISTS `mqtt_acl` (
  `id` int(11) unsigned NOT NULL AUTO_INCREMENT,
  `allow` int(1) DEFAULT NULL COMMENT '0: deny, 1: allow',
  `ipaddr` varchar(60) DEFAULT NULL COMMENT 'IpAddress',
  `username` varchar(100) DEFAULT NULL COMMENT 'Username',
  `clientid` varchar(100) DEFAULT NULL COMMENT 'ClientId',
  `access` int(2) NOT NULL COMMENT '1: subscribe, 2: publish, 3: pubsub',
  `topic` varchar(100) NOT NULL DEFAULT '' COMMENT 'Topic Filter',
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS `mqtt_user` (
  `id` int(11) unsigned NOT NULL AUTO_INCREMENT,
  `username` varchar(100) DEFAULT NULL,
  `password` varchar(100) DEFAULT NULL,
  `salt` varchar(35) DEFAULT NULL,
  `is_superuser` tinyint(1) DEFAULT 0,
  `created` datetime DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `mqtt_username` (`username`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- SCRAM-SHA-256 credentials (the scram-sha256 plugin, MQTT 5 enhanced authentication):
-- RFC 5802's salt, iteration count, StoredKey and ServerKey, base64, never the password.
CREATE TABLE IF NOT EXISTS `mqtt_scram_user` (
  `id` int(11) unsigned NOT NULL AUTO_INCREMENT,
  `username` varchar(100) NOT NULL,
  `salt` varchar(64) NOT NULL,
  `iterations` int(11) NOT NULL,
  `stored_key` varchar(64) NOT NULL,
  `server_key` varchar(64) NOT NULL,
  `is_superuser` tinyint(1) DEFAULT 0,
  `created` datetime DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `mqtt_scram_username` (`username`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
