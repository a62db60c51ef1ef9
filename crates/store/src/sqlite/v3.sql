-- Version 3: where each device's periodic sync stands, so that each scheduled instant fires at
-- most once across server restarts; when each device last synced; and the bytes each user's live
-- objects take, for quotas.
CREATE TABLE device_timers (
    device_id          TEXT PRIMARY KEY REFERENCES devices(id),
    schedule           TEXT NOT NULL,
    fired_through_ms   BIGINT NOT NULL,
    owed               INTEGER NOT NULL DEFAULT 0
);

ALTER TABLE devices ADD COLUMN last_sync_ms BIGINT;

ALTER TABLE users ADD COLUMN bytes_used BIGINT NOT NULL DEFAULT 0;
UPDATE users SET bytes_used =
    (SELECT COALESCE(SUM(size), 0) FROM objects WHERE objects.user_id = users.id AND deleted_ms IS NULL);

-- Invariant: users.bytes_used is the sum of the sizes of the user's live objects. Every change to
-- an object's size or life passes through these triggers, whatever statement makes it.
CREATE TRIGGER objects_bytes_insert AFTER INSERT ON objects WHEN NEW.deleted_ms IS NULL
BEGIN
    UPDATE users SET bytes_used = bytes_used + NEW.size WHERE id = NEW.user_id;
END;
CREATE TRIGGER objects_bytes_update AFTER UPDATE OF size, deleted_ms ON objects
BEGIN
    UPDATE users SET bytes_used = bytes_used
        - (CASE WHEN OLD.deleted_ms IS NULL THEN OLD.size ELSE 0 END)
        + (CASE WHEN NEW.deleted_ms IS NULL THEN NEW.size ELSE 0 END)
    WHERE id = NEW.user_id;
END;
CREATE TRIGGER objects_bytes_delete AFTER DELETE ON objects WHEN OLD.deleted_ms IS NULL
BEGIN
    UPDATE users SET bytes_used = bytes_used - OLD.size WHERE id = OLD.user_id;
END;
