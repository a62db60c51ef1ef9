-- Version 2: each device's sync profile (JSON) and a revision bumped whenever it changes, so a
-- device can tell that its local storage must be re-scoped.
ALTER TABLE devices ADD COLUMN profile TEXT;
ALTER TABLE devices ADD COLUMN profile_revision BIGINT NOT NULL DEFAULT 0;
