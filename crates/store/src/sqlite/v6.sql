-- Version 6: the paths a move took content away from. A device re-reading its whole view (its
-- index lost) can then tell a stale copy at an object's old place from a new file, even where
-- the folders on the way were deleted and made anew since.
CREATE TABLE moved_away (
    user_id   INTEGER NOT NULL REFERENCES users(id),
    path      TEXT NOT NULL,
    hash      TEXT NOT NULL,
    moved_ms  BIGINT NOT NULL,
    PRIMARY KEY (user_id, path, hash)
);
CREATE INDEX moved_away_age ON moved_away(moved_ms);
