-- Identity separations: an admin's override saying two accounts are NOT the same person, so
-- email matching never pairs them (one row per direction, like identity_links).
CREATE TABLE identity_separations (
    org_id           TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    platform         TEXT    NOT NULL,
    user_id          TEXT    NOT NULL,
    target_platform  TEXT    NOT NULL,
    target_user_id   TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    PRIMARY KEY (org_id, platform, user_id, target_platform, target_user_id)
);
CREATE INDEX identity_separations_by_target ON identity_separations (org_id, target_platform, target_user_id);
