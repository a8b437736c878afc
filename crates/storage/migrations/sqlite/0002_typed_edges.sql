-- Typed store edges: who posted every message copy and which part it is, inbox items that
-- are events, change hints or connection signals, typed (versioned) delivery jobs, and the
-- last-seen snapshot of messages.

-- Message copies: `posted_by_us` becomes the identity that posted the copy (NULL for the
-- origin), and each copy gets its part number within its channel (existing copies of one
-- universal message in one channel are numbered in the order they were recorded).
ALTER TABLE message_copies ADD COLUMN posted_as TEXT;
ALTER TABLE message_copies ADD COLUMN posted_as_user TEXT;
ALTER TABLE message_copies ADD COLUMN part INTEGER NOT NULL DEFAULT 0;
UPDATE message_copies SET posted_as = 'service_account' WHERE posted_by_us;
UPDATE message_copies SET part = (
    SELECT COUNT(*) FROM message_copies o
    WHERE o.org_id = message_copies.org_id AND o.universal_id = message_copies.universal_id
      AND o.platform = message_copies.platform AND o.team_id = message_copies.team_id
      AND o.channel_id = message_copies.channel_id
      AND (o.created_at < message_copies.created_at
           OR (o.created_at = message_copies.created_at AND o.message_id < message_copies.message_id))
);
ALTER TABLE message_copies DROP COLUMN posted_by_us;
CREATE UNIQUE INDEX message_copies_part ON message_copies
    (org_id, universal_id, platform, team_id, channel_id, part);

-- The inbox holds any received item: signals have neither a dedupe key nor a channel.
-- Stored events become `{"inbound": "event", …}` items.
CREATE TABLE inbox_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id         TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    platform       TEXT    NOT NULL,
    event_id       TEXT,
    channel        TEXT,
    item           TEXT    NOT NULL,
    received_at    INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    lease_owner    TEXT,
    lease_until    INTEGER,
    processed_at   INTEGER,
    error          TEXT,
    UNIQUE (org_id, platform, event_id),
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);
INSERT INTO inbox_new (id, org_id, connection_id, platform, event_id, channel, item, received_at,
                       attempts, lease_owner, lease_until, processed_at, error)
SELECT id, org_id, connection_id, platform, event_id, channel,
       CASE WHEN json_valid(event) AND json_type(event) = 'object'
            THEN json_set(event, '$.inbound', 'event') ELSE event END,
       received_at, attempts, lease_owner, lease_until, processed_at, error
FROM inbox;
-- Keep the id counter, so ids of pruned rows are not handed out again.
DELETE FROM sqlite_sequence WHERE name = 'inbox_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'inbox_new', seq FROM sqlite_sequence WHERE name = 'inbox';
DROP TABLE inbox;
ALTER TABLE inbox_new RENAME TO inbox;
CREATE INDEX inbox_unprocessed ON inbox (id) WHERE processed_at IS NULL;
CREATE INDEX inbox_unprocessed_by_channel ON inbox (org_id, channel, id) WHERE processed_at IS NULL;
CREATE INDEX inbox_processed ON inbox (processed_at) WHERE processed_at IS NOT NULL;

-- Delivery jobs are typed and versioned; rows written before (version 0, untyped JSON) are
-- set aside as failed when leased.
ALTER TABLE outbox ADD COLUMN job_version INTEGER NOT NULL DEFAULT 0;

-- What was last seen of a message (Graph reports edits and reactions alike as "updated").
CREATE TABLE message_snapshots (
    org_id      TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    platform    TEXT    NOT NULL,
    team_id     TEXT    NOT NULL,
    channel_id  TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    snapshot    TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, platform, team_id, channel_id, message_id)
);
