-- End users' linked platform accounts ("link my account": copies of their messages are posted
-- as them). One row per (org, platform, user); the delegated credentials are sealed like a
-- connection's, bound to the row key `account_key` = '<platform>/<user id>'.
CREATE TABLE user_accounts (
    org_id        TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    account_key   TEXT    NOT NULL,
    platform      TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    linked_at     INTEGER NOT NULL,
    key_id        TEXT    NOT NULL,
    sealed        BLOB    NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (org_id, account_key)
);

-- A fingerprint of the content Switchboard last wrote to a copy posted as a linked user: an
-- edit notification with other content is the user's own edit (relayed), not our echo.
ALTER TABLE message_copies ADD COLUMN written_fingerprint TEXT;
