-- Typed store edges: who posted every message copy and which part it is, inbox items that
-- are events, change hints or connection signals, typed (versioned) delivery jobs, and the
-- last-seen snapshot of messages.

-- Message copies: `posted_by_us` becomes the identity that posted the copy (NULL for the
-- origin), and each copy gets its part number within its channel (existing copies of one
-- universal message in one channel are numbered in the order they were recorded).
ALTER TABLE message_copies ADD COLUMN posted_as TEXT;
ALTER TABLE message_copies ADD COLUMN posted_as_user TEXT;
ALTER TABLE message_copies ADD COLUMN part BIGINT NOT NULL DEFAULT 0;
UPDATE message_copies SET posted_as = 'service_account' WHERE posted_by_us;
UPDATE message_copies m SET part = (
    SELECT COUNT(*) FROM message_copies o
    WHERE o.org_id = m.org_id AND o.universal_id = m.universal_id
      AND o.platform = m.platform AND o.team_id = m.team_id AND o.channel_id = m.channel_id
      AND (o.created_at < m.created_at
           OR (o.created_at = m.created_at AND o.message_id < m.message_id))
);
ALTER TABLE message_copies DROP COLUMN posted_by_us;
CREATE UNIQUE INDEX message_copies_part ON message_copies
    (org_id, universal_id, platform, team_id, channel_id, part);

-- The inbox holds any received item: signals have neither a dedupe key nor a channel.
-- Stored events become `{"inbound": "event", …}` items (rows that are not JSON objects are
-- left as they are: they are set aside when leased, as before).
ALTER TABLE inbox ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE inbox ALTER COLUMN channel DROP NOT NULL;
ALTER TABLE inbox RENAME COLUMN event TO item;
DO $$
DECLARE r RECORD;
BEGIN
    FOR r IN SELECT id, item FROM inbox LOOP
        BEGIN
            IF jsonb_typeof(r.item::jsonb) = 'object' THEN
                UPDATE inbox SET item = (r.item::jsonb || '{"inbound": "event"}'::jsonb)::text
                WHERE id = r.id;
            END IF;
        EXCEPTION WHEN others THEN
            NULL;
        END;
    END LOOP;
END $$;

-- Delivery jobs are typed and versioned; rows written before (version 0, untyped JSON) are
-- set aside as failed when leased.
ALTER TABLE outbox ADD COLUMN job_version BIGINT NOT NULL DEFAULT 0;

-- What was last seen of a message (Graph reports edits and reactions alike as "updated").
CREATE TABLE message_snapshots (
    org_id      TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    platform    TEXT    NOT NULL,
    team_id     TEXT    NOT NULL,
    channel_id  TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    snapshot    TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (org_id, platform, team_id, channel_id, message_id)
);
