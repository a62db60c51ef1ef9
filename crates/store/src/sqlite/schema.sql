-- cpm store schema, version 1. Portable SQL: SQLite and PostgreSQL both run it.
CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    -- The store's modseq: bumped by every change of this user's folders and objects.
    highest_modseq  BIGINT NOT NULL DEFAULT 0,
    -- Tombstones up to this modseq have been purged; older cursors must resync.
    purged_modseq   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE devices (
    id            TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    name          TEXT NOT NULL,
    class         TEXT NOT NULL,
    time_zone     TEXT,
    created_ms    BIGINT NOT NULL,
    last_seen_ms  BIGINT,
    revoked_ms    BIGINT
);
CREATE UNIQUE INDEX devices_live_name ON devices(user_id, name) WHERE revoked_ms IS NULL;

CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    device_id   TEXT REFERENCES devices(id),
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);

CREATE TABLE folders (
    id           TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    parent_id    TEXT REFERENCES folders(id),
    name         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    modified_ms  BIGINT NOT NULL,
    modseq       BIGINT NOT NULL,
    deleted_ms   BIGINT
);
CREATE UNIQUE INDEX folders_live_name ON folders(parent_id, name) WHERE deleted_ms IS NULL;
CREATE INDEX folders_journal ON folders(user_id, modseq);

CREATE TABLE objects (
    id            TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    folder_id     TEXT NOT NULL REFERENCES folders(id),
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    hash          TEXT NOT NULL,
    flags         TEXT NOT NULL DEFAULT '',
    attributes    TEXT,
    created_ms    BIGINT NOT NULL,
    modified_ms   BIGINT NOT NULL,
    modseq        BIGINT NOT NULL,
    deleted_ms    BIGINT
);
CREATE UNIQUE INDEX objects_live_name ON objects(folder_id, name) WHERE deleted_ms IS NULL;
CREATE INDEX objects_journal ON objects(user_id, modseq);
CREATE INDEX objects_hash ON objects(user_id, hash);

-- Which user has uploaded which content. Existence of a hash is only ever answered per user, so
-- one user cannot learn what another stores.
CREATE TABLE blobs (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    hash        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (user_id, hash)
);
CREATE INDEX blobs_by_hash ON blobs(hash);
