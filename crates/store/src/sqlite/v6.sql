-- Version 6: where content stood before a move took it away. A device re-reading its whole
-- view (its index lost) can then tell a stale copy at an object's old place from a new file.
CREATE TABLE moved_away (
    user_id   INTEGER NOT NULL REFERENCES users(id),
    folder_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    hash      TEXT NOT NULL,
    moved_ms  BIGINT NOT NULL,
    PRIMARY KEY (user_id, folder_id, name, hash)
);
CREATE INDEX moved_away_age ON moved_away(moved_ms);
