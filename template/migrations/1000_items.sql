-- The example resource. Portable between SQLite and PostgreSQL: times are
-- milliseconds since the Unix epoch, integers BIGINT.
CREATE TABLE items (
    -- A UUIDv7 as text: its text order is its creation order, which is
    -- the order of a list and what its cursor points into.
    id TEXT PRIMARY KEY,
    -- Unique: a second item with a name in use is refused with 409.
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
