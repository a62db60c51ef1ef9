-- Version 4: objects by their last modification, so that a device whose filter reads an age
-- learns which objects aged into or out of its view without reading every object.
CREATE INDEX objects_modified ON objects(user_id, modified_ms) WHERE deleted_ms IS NULL;
