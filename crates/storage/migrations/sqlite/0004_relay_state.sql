-- Relay state: the ledger of reactions relayed through one identity, posts that combine
-- several queued messages (under backlog), messages posted per channel per day (the Teams
-- daily cap), and an index for listing dead letters.

-- One row per reactor of one emoji on one part of the copy of a universal message in one
-- target channel.
CREATE TABLE relay_reactions (
    org_id            TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    universal_id      TEXT    NOT NULL,
    platform          TEXT    NOT NULL,
    team_id           TEXT    NOT NULL,
    channel_id        TEXT    NOT NULL,
    part              INTEGER NOT NULL,
    emoji_key         TEXT    NOT NULL,
    emoji             TEXT    NOT NULL,
    reactor_platform  TEXT    NOT NULL,
    reactor_user      TEXT    NOT NULL,
    reactor_name      TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (org_id, universal_id, platform, team_id, channel_id, part, emoji_key,
                 reactor_platform, reactor_user)
);

-- The messages a combined post holds, in order; content is the translated message as
-- combined (JSON), NULL once deleted.
CREATE TABLE combined_posts (
    org_id        TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    platform      TEXT    NOT NULL,
    team_id       TEXT    NOT NULL,
    channel_id    TEXT    NOT NULL,
    universal_id  TEXT    NOT NULL,
    message_id    TEXT    NOT NULL,
    position      INTEGER NOT NULL,
    content       TEXT,
    PRIMARY KEY (org_id, platform, team_id, channel_id, universal_id)
);
CREATE INDEX combined_posts_by_message ON combined_posts
    (org_id, platform, team_id, channel_id, message_id, position);

-- Messages posted into a channel per UTC day (YYYY-MM-DD).
CREATE TABLE daily_posts (
    org_id      TEXT    NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    platform    TEXT    NOT NULL,
    team_id     TEXT    NOT NULL,
    channel_id  TEXT    NOT NULL,
    day         TEXT    NOT NULL,
    messages    INTEGER NOT NULL,
    PRIMARY KEY (org_id, day, platform, team_id, channel_id)
);

CREATE INDEX outbox_failed ON outbox (org_id, id) WHERE state = 'failed';
