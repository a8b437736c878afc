-- Which platform account posted each copy: the connection's account at the time, so copies
-- posted before a connection was migrated to another account are known (platforms let only
-- the sender edit or delete a message).
--
-- Existing copies posted as the connection's account are backfilled from the connection of
-- the endpoint their channel is linked through: the account the earliest migration after the
-- copy was recorded moved off (the audit log's `connection.migrated` entries), else the
-- connection's current account. Copies in channels no longer linked stay NULL (unknown).
ALTER TABLE message_copies ADD COLUMN posted_by_account TEXT;
UPDATE message_copies SET posted_by_account = COALESCE(
    (SELECT json_extract(a.details, '$.from.user_id')
     FROM universal_endpoints e
     JOIN audit_log a ON a.org_id = e.org_id AND a.action = 'connection.migrated'
          AND a.target = e.connection_id
     WHERE e.org_id = message_copies.org_id AND e.platform = message_copies.platform
       AND e.team_id = message_copies.team_id AND e.channel_id = message_copies.channel_id
       AND a.at > message_copies.created_at
     ORDER BY a.at, a.seq LIMIT 1),
    (SELECT c.account_user_id
     FROM universal_endpoints e
     JOIN connections c ON c.org_id = e.org_id AND c.id = e.connection_id
     WHERE e.org_id = message_copies.org_id AND e.platform = message_copies.platform
       AND e.team_id = message_copies.team_id AND e.channel_id = message_copies.channel_id)
)
WHERE posted_as = 'service_account';
UPDATE message_copies SET posted_by_account = posted_as_user WHERE posted_as = 'linked_user';
