-- Switchboard storage, SQLite. Times are Unix nanoseconds (INTEGER); JSON is TEXT;
-- sealed values are BLOBs (format byte, nonce, ciphertext) with the sealing key's id.

CREATE TABLE orgs (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE admin_tokens (
    lookup      TEXT    NOT NULL PRIMARY KEY,
    org_id      TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    token_hash  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX admin_tokens_by_name ON admin_tokens (org_id, name);

CREATE TABLE connections (
    org_id                      TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id                          TEXT    NOT NULL,
    platform                    TEXT    NOT NULL,
    tenant                      TEXT    NOT NULL,
    enterprise                  TEXT,
    display_name                TEXT    NOT NULL,
    account_user_id             TEXT    NOT NULL,
    account_display_name        TEXT    NOT NULL,
    account_is_service_account  BOOLEAN NOT NULL,
    health                      TEXT    NOT NULL,
    created_at                  INTEGER NOT NULL,
    PRIMARY KEY (org_id, id)
);

CREATE TABLE credentials (
    org_id         TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    key_id         TEXT    NOT NULL,
    sealed         BLOB    NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (org_id, connection_id),
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);

CREATE TABLE secrets (
    org_id      TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    key_id      TEXT    NOT NULL,
    sealed      BLOB    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE import_runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id         TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);

CREATE TABLE teams (
    org_id         TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    description    TEXT,
    seen_run       INTEGER NOT NULL,
    PRIMARY KEY (org_id, connection_id, id),
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);

CREATE TABLE channels (
    org_id         TEXT    NOT NULL,
    platform       TEXT    NOT NULL,
    team_id        TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    description    TEXT,
    removed        BOOLEAN NOT NULL,
    seen_run       INTEGER NOT NULL,
    PRIMARY KEY (org_id, platform, team_id, id),
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);
CREATE INDEX channels_by_connection ON channels (org_id, connection_id, team_id);

CREATE TABLE users (
    org_id         TEXT    NOT NULL,
    platform       TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    display_name   TEXT    NOT NULL,
    email          TEXT,
    email_norm     TEXT,
    avatar_url     TEXT,
    is_guest       BOOLEAN NOT NULL,
    is_bot         BOOLEAN NOT NULL,
    is_deleted     BOOLEAN NOT NULL,
    removed        BOOLEAN NOT NULL,
    seen_run       INTEGER NOT NULL,
    PRIMARY KEY (org_id, platform, id),
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);
CREATE INDEX users_by_connection ON users (org_id, connection_id);
CREATE INDEX users_by_email ON users (org_id, platform, email_norm);

CREATE TABLE memberships (
    org_id         TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    team_id        TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    is_owner       BOOLEAN NOT NULL,
    removed        BOOLEAN NOT NULL,
    seen_run       INTEGER NOT NULL,
    PRIMARY KEY (org_id, connection_id, team_id, user_id),
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);

-- Manual identity links, one row per direction.
CREATE TABLE identity_links (
    org_id           TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    platform         TEXT    NOT NULL,
    user_id          TEXT    NOT NULL,
    target_platform  TEXT    NOT NULL,
    target_user_id   TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (org_id, platform, user_id, target_platform)
);
CREATE INDEX identity_links_by_target ON identity_links (org_id, target_platform, target_user_id);

CREATE TABLE universal_channels (
    org_id                    TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id                        TEXT    NOT NULL,
    name                      TEXT    NOT NULL,
    relay_membership_notices  BOOLEAN NOT NULL,
    created_at                INTEGER NOT NULL,
    PRIMARY KEY (org_id, id)
);

CREATE TABLE universal_endpoints (
    org_id         TEXT    NOT NULL,
    universal_id   TEXT    NOT NULL,
    position       INTEGER NOT NULL,
    connection_id  TEXT    NOT NULL,
    platform       TEXT    NOT NULL,
    team_id        TEXT    NOT NULL,
    channel_id     TEXT    NOT NULL,
    PRIMARY KEY (org_id, universal_id, position),
    UNIQUE (org_id, platform, team_id, channel_id),
    FOREIGN KEY (org_id, universal_id) REFERENCES universal_channels (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id)
);
CREATE INDEX universal_endpoints_by_connection ON universal_endpoints (org_id, connection_id);

CREATE TABLE message_copies (
    org_id         TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    platform       TEXT    NOT NULL,
    team_id        TEXT    NOT NULL,
    channel_id     TEXT    NOT NULL,
    message_id     TEXT    NOT NULL,
    universal_id   TEXT    NOT NULL,
    thread_root    TEXT,
    posted_by_us   BOOLEAN NOT NULL,
    last_edit_at   INTEGER,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (org_id, platform, team_id, channel_id, message_id)
);
CREATE INDEX message_copies_by_universal ON message_copies (org_id, universal_id);

CREATE TABLE cursors (
    org_id         TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    value          TEXT    NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (org_id, connection_id, key),
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);

CREATE TABLE subscriptions (
    id                   TEXT    NOT NULL PRIMARY KEY,
    org_id               TEXT    NOT NULL,
    connection_id        TEXT    NOT NULL,
    channel              TEXT    NOT NULL,
    key_id               TEXT    NOT NULL,
    sealed_client_state  BLOB    NOT NULL,
    expires_at           INTEGER NOT NULL,
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);
CREATE INDEX subscriptions_by_org ON subscriptions (org_id);

-- The durable inbox: accepted platform events, deduplicated per platform event id.
CREATE TABLE inbox (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id         TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    platform       TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    channel        TEXT    NOT NULL,
    event          TEXT    NOT NULL,
    received_at    INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    lease_owner    TEXT,
    lease_until    INTEGER,
    processed_at   INTEGER,
    error          TEXT,
    UNIQUE (org_id, platform, event_id),
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);
CREATE INDEX inbox_unprocessed ON inbox (id) WHERE processed_at IS NULL;
CREATE INDEX inbox_unprocessed_by_channel ON inbox (org_id, channel, id) WHERE processed_at IS NULL;
CREATE INDEX inbox_processed ON inbox (processed_at) WHERE processed_at IS NOT NULL;

-- The durable outbox: one row per delivery to one target channel.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id           TEXT    NOT NULL,
    connection_id    TEXT    NOT NULL,
    target           TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id) ON DELETE CASCADE
);
CREATE INDEX outbox_pending ON outbox (id) WHERE state = 'pending';
CREATE INDEX outbox_pending_by_target ON outbox (org_id, target, id) WHERE state = 'pending';
CREATE INDEX outbox_finished ON outbox (finished_at) WHERE state <> 'pending';

-- The append-only, hash-chained audit log, and each organization's chain head.
CREATE TABLE audit_log (
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    seq        INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    details    TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    PRIMARY KEY (org_id, seq)
);

CREATE TABLE audit_heads (
    org_id     TEXT    NOT NULL PRIMARY KEY REFERENCES orgs (id),
    last_seq   INTEGER NOT NULL,
    last_hash  TEXT    NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
