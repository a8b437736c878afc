//! The imported directory and the identity map (`DirectoryStore`).

use super::*;

impl Backend {
    pub(super) async fn require_run(
        tx: &mut Tx,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
    ) -> Result<PlatformKind> {
        let row = sqlx::query(
            "SELECT c.platform FROM import_runs r JOIN connections c \
             ON c.org_id = r.org_id AND c.id = r.connection_id \
             WHERE r.id = $1 AND r.org_id = $2 AND r.connection_id = $3",
        )
        .bind(run.0)
        .bind(org.as_str())
        .bind(connection.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| db_err("reading the import run", e))?;
        match row {
            Some(r) => parse_col(&r, "connections", "platform"),
            None => Err(Error::invalid(format!(
                "import run {} was not started for connection {connection} of organization {org}",
                run.0
            ))),
        }
    }

    pub(super) async fn require_user(
        tx: &mut Tx,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<()> {
        let found =
            sqlx::query("SELECT 1 FROM users WHERE org_id = $1 AND platform = $2 AND id = $3")
                .bind(org.as_str())
                .bind(platform.as_str())
                .bind(user.as_str())
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| db_err("reading the user", e))?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::not_found(format!(
                "{platform} user {user} is not in the directory of organization {org}; import it first"
            ))),
        }
    }

    pub(super) async fn delete_links_of(
        tx: &mut Tx,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM identity_links WHERE org_id = $1 AND ((platform = $2 AND user_id = $3) \
             OR (target_platform = $2 AND target_user_id = $3))",
        )
        .bind(org.as_str())
        .bind(platform.as_str())
        .bind(user.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("removing identity links", e))?;
        let x = sqlx::query(
            "DELETE FROM identity_separations WHERE org_id = $1 AND ((platform = $2 AND user_id = $3) \
             OR (target_platform = $2 AND target_user_id = $3))",
        )
        .bind(org.as_str())
        .bind(platform.as_str())
        .bind(user.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("removing identity separations", e))?;
        Ok(r.rows_affected() + x.rows_affected())
    }

    /// Deletes the separation rows between `a` and `b` (both directions).
    async fn delete_separation(
        tx: &mut Tx,
        org: &OrgId,
        a: (PlatformKind, &UserId),
        b: (PlatformKind, &UserId),
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM identity_separations WHERE org_id = $1 AND (\
               (platform = $2 AND user_id = $3 AND target_platform = $4 AND target_user_id = $5) \
               OR (platform = $4 AND user_id = $5 AND target_platform = $2 AND target_user_id = $3))",
        )
        .bind(org.as_str())
        .bind(a.0.as_str())
        .bind(a.1.as_str())
        .bind(b.0.as_str())
        .bind(b.1.as_str())
        .execute(&mut **tx)
        .await
        .map_err(|e| db_err("removing the identity separation", e))?;
        Ok(())
    }

    /// Reads identity pairs stored one row per direction from `table`, each pair once.
    async fn list_pairs(&self, org: &OrgId, table: &str) -> Result<Vec<IdentityLink>> {
        let rows = sqlx::query(&format!(
            "SELECT platform, user_id, target_platform, target_user_id, created_at \
             FROM {table} WHERE org_id = $1"
        ))
        .bind(org.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err(&format!("listing {table}"), e))?;
        // Keyed by (a platform, a user, b platform, b user).
        let mut pairs: BTreeMap<[String; 4], IdentityLink> = BTreeMap::new();
        for r in &rows {
            let from: (PlatformKind, UserId) = (
                parse_col(r, table, "platform")?,
                parse_col(r, table, "user_id")?,
            );
            let to: (PlatformKind, UserId) = (
                parse_col(r, table, "target_platform")?,
                parse_col(r, table, "target_user_id")?,
            );
            let created_at = from_ts(&format!("{table}.created_at"), col(r, "created_at")?)?;
            let (a, b) = if from.0.as_str() <= to.0.as_str() {
                (from, to)
            } else {
                (to, from)
            };
            let key = [
                a.0.as_str().to_owned(),
                a.1.as_str().to_owned(),
                b.0.as_str().to_owned(),
                b.1.as_str().to_owned(),
            ];
            pairs
                .entry(key)
                .or_insert(IdentityLink { a, b, created_at });
        }
        Ok(pairs.into_values().collect())
    }
}

#[async_trait]
impl DirectoryStore for Backend {
    async fn begin_import(&self, org: &OrgId, connection: &ConnectionId) -> Result<ImportRun> {
        let mut tx = self.begin().await?;
        Self::require_connection(&mut tx, org, connection).await?;
        let row = sqlx::query(
            "INSERT INTO import_runs (org_id, connection_id, started_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .bind(now_ns())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_err("starting the import", e))?;
        let id: i64 = col(&row, "id")?;
        Self::commit(tx).await?;
        Ok(ImportRun(id))
    }

    async fn upsert_teams(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        teams: &[Team],
    ) -> Result<()> {
        for t in teams {
            limits::text("team name", &t.name, limits::MAX_NAME_BYTES)?;
            limits::opt_text(
                "team description",
                t.description.as_deref(),
                limits::MAX_DESCRIPTION_BYTES,
            )?;
        }
        let teams = dedupe_last(teams, |t| t.id.clone());
        let mut tx = self.begin().await?;
        Self::require_run(&mut tx, org, connection, run).await?;
        for chunk in teams.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO teams (org_id, connection_id, id, name, description, seen_run) ",
            );
            qb.push_values(chunk, |mut b, t| {
                b.push_bind(org.as_str())
                    .push_bind(connection.as_str())
                    .push_bind(t.id.as_str())
                    .push_bind(t.name.as_str())
                    .push_bind(t.description.as_deref())
                    .push_bind(run.0);
            });
            qb.push(
                " ON CONFLICT (org_id, connection_id, id) DO UPDATE SET name = excluded.name, \
                 description = excluded.description, seen_run = CASE WHEN excluded.seen_run > \
                 teams.seen_run THEN excluded.seen_run ELSE teams.seen_run END",
            );
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("storing teams", e))?;
        }
        Self::commit(tx).await
    }

    async fn upsert_channels(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        channels: &[Channel],
    ) -> Result<()> {
        for c in channels {
            limits::text("channel name", &c.name, limits::MAX_NAME_BYTES)?;
            limits::opt_text(
                "channel description",
                c.description.as_deref(),
                limits::MAX_DESCRIPTION_BYTES,
            )?;
        }
        let channels = dedupe_last(channels, |c| (c.team.clone(), c.id.clone()));
        let mut tx = self.begin().await?;
        let platform = Self::require_run(&mut tx, org, connection, run).await?;
        for chunk in channels.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO channels (org_id, platform, team_id, id, connection_id, name, kind, \
                 description, removed, seen_run) ",
            );
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(org.as_str())
                    .push_bind(platform.as_str())
                    .push_bind(c.team.as_str())
                    .push_bind(c.id.as_str())
                    .push_bind(connection.as_str())
                    .push_bind(c.name.as_str())
                    .push_bind(c.kind.as_str())
                    .push_bind(c.description.as_deref())
                    .push_bind(false)
                    .push_bind(run.0);
            });
            qb.push(
                " ON CONFLICT (org_id, platform, team_id, id) DO UPDATE SET \
                 connection_id = excluded.connection_id, name = excluded.name, kind = excluded.kind, \
                 description = excluded.description, removed = excluded.removed, \
                 seen_run = CASE WHEN excluded.seen_run > channels.seen_run \
                 THEN excluded.seen_run ELSE channels.seen_run END",
            );
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("storing channels", e))?;
        }
        Self::commit(tx).await
    }

    async fn upsert_users(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        users: &[User],
    ) -> Result<()> {
        for u in users {
            limits::text("user display name", &u.display_name, limits::MAX_NAME_BYTES)?;
            limits::opt_text("user email", u.email.as_deref(), limits::MAX_EMAIL_BYTES)?;
            limits::opt_text(
                "user avatar URL",
                u.avatar_url.as_deref(),
                limits::MAX_URL_BYTES,
            )?;
        }
        let users = dedupe_last(users, |u| u.id.clone());
        let norms: Vec<Option<String>> = users
            .iter()
            .map(|u| {
                u.email
                    .as_deref()
                    .map(|e| e.trim().to_lowercase())
                    .filter(|e| !e.is_empty())
            })
            .collect();
        let rows: Vec<(&User, Option<&str>)> = users
            .iter()
            .zip(&norms)
            .map(|(u, n)| (*u, n.as_deref()))
            .collect();
        let mut tx = self.begin().await?;
        let platform = Self::require_run(&mut tx, org, connection, run).await?;
        for chunk in rows.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO users (org_id, platform, id, connection_id, display_name, email, \
                 email_norm, avatar_url, is_guest, is_bot, is_deleted, removed, seen_run) ",
            );
            qb.push_values(chunk, |mut b, (u, norm)| {
                b.push_bind(org.as_str())
                    .push_bind(platform.as_str())
                    .push_bind(u.id.as_str())
                    .push_bind(connection.as_str())
                    .push_bind(u.display_name.as_str())
                    .push_bind(u.email.as_deref())
                    .push_bind(*norm)
                    .push_bind(u.avatar_url.as_deref())
                    .push_bind(u.is_guest)
                    .push_bind(u.is_bot)
                    .push_bind(u.is_deleted)
                    .push_bind(false)
                    .push_bind(run.0);
            });
            qb.push(
                " ON CONFLICT (org_id, platform, id) DO UPDATE SET \
                 connection_id = excluded.connection_id, display_name = excluded.display_name, \
                 email = excluded.email, email_norm = excluded.email_norm, \
                 avatar_url = excluded.avatar_url, is_guest = excluded.is_guest, \
                 is_bot = excluded.is_bot, is_deleted = excluded.is_deleted, \
                 removed = excluded.removed, seen_run = CASE WHEN excluded.seen_run > \
                 users.seen_run THEN excluded.seen_run ELSE users.seen_run END",
            );
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("storing users", e))?;
        }
        Self::commit(tx).await
    }

    async fn upsert_memberships(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        members: &[Membership],
    ) -> Result<()> {
        let members = dedupe_last(members, |m| (m.team.clone(), m.user.clone()));
        let mut tx = self.begin().await?;
        Self::require_run(&mut tx, org, connection, run).await?;
        for chunk in members.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO memberships (org_id, connection_id, team_id, user_id, is_owner, \
                 removed, seen_run) ",
            );
            qb.push_values(chunk, |mut b, m| {
                b.push_bind(org.as_str())
                    .push_bind(connection.as_str())
                    .push_bind(m.team.as_str())
                    .push_bind(m.user.as_str())
                    .push_bind(m.is_owner)
                    .push_bind(false)
                    .push_bind(run.0);
            });
            qb.push(
                " ON CONFLICT (org_id, connection_id, team_id, user_id) DO UPDATE SET \
                 is_owner = excluded.is_owner, removed = excluded.removed, \
                 seen_run = CASE WHEN excluded.seen_run > memberships.seen_run \
                 THEN excluded.seen_run ELSE memberships.seen_run END",
            );
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("storing memberships", e))?;
        }
        Self::commit(tx).await
    }

    async fn finish_team_import(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
        team: &TeamId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        Self::require_run(&mut tx, org, connection, run).await?;
        for table in ["channels", "memberships"] {
            sqlx::query(&format!(
                "UPDATE {table} SET removed = TRUE WHERE org_id = $1 AND connection_id = $2 \
                 AND team_id = $3 AND seen_run < $4 AND removed = FALSE"
            ))
            .bind(org.as_str())
            .bind(connection.as_str())
            .bind(team.as_str())
            .bind(run.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err(&format!("marking removed {table}"), e))?;
        }
        Self::commit(tx).await
    }

    async fn finish_user_import(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        run: ImportRun,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        Self::require_run(&mut tx, org, connection, run).await?;
        sqlx::query(
            "UPDATE users SET removed = TRUE WHERE org_id = $1 AND connection_id = $2 \
             AND seen_run < $3 AND removed = FALSE",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .bind(run.0)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("marking removed users", e))?;
        Self::commit(tx).await
    }

    async fn list_teams(&self, org: &OrgId, connection: &ConnectionId) -> Result<Vec<Team>> {
        let rows = sqlx::query(
            "SELECT id, name, description FROM teams WHERE org_id = $1 AND connection_id = $2 ORDER BY id",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing teams", e))?;
        rows.iter()
            .map(|r| {
                Ok(Team {
                    id: parse_col(r, "teams", "id")?,
                    name: col_str(r, "name")?,
                    description: col(r, "description")?,
                })
            })
            .collect()
    }

    async fn list_channels(
        &self,
        org: &OrgId,
        connection: Option<&ConnectionId>,
        after: Option<&ChannelRef>,
        limit: usize,
    ) -> Result<Vec<StoredChannel>> {
        let limit = page_limit(limit)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE org_id = $1 \
             AND ($2 IS NULL OR connection_id = $2) \
             AND ($3 IS NULL OR (platform, team_id, id) > ($3, $4, $5)) \
             ORDER BY platform, team_id, id LIMIT $6"
        ))
        .bind(org.as_str())
        .bind(connection.map(|c| c.as_str()))
        .bind(after.map(|c| c.platform.as_str()))
        .bind(after.map(|c| c.team.as_str()))
        .bind(after.map(|c| c.channel.as_str()))
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing channels", e))?;
        rows.iter().map(channel_from_row).collect()
    }

    async fn get_channel(
        &self,
        org: &OrgId,
        reference: &ChannelRef,
    ) -> Result<Option<StoredChannel>> {
        let row = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND id = $4"
        ))
        .bind(org.as_str())
        .bind(reference.platform.as_str())
        .bind(reference.team.as_str())
        .bind(reference.channel.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the channel", e))?;
        row.as_ref().map(channel_from_row).transpose()
    }

    async fn list_users(
        &self,
        org: &OrgId,
        connection: Option<&ConnectionId>,
        after: Option<(PlatformKind, &UserId)>,
        limit: usize,
    ) -> Result<Vec<StoredUser>> {
        let limit = page_limit(limit)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 \
             AND ($2 IS NULL OR connection_id = $2) \
             AND ($3 IS NULL OR (platform, id) > ($3, $4)) \
             ORDER BY platform, id LIMIT $5"
        ))
        .bind(org.as_str())
        .bind(connection.map(|c| c.as_str()))
        .bind(after.map(|(p, _)| p.as_str()))
        .bind(after.map(|(_, u)| u.as_str()))
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing users", e))?;
        rows.iter().map(user_from_row).collect()
    }

    async fn get_user(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
    ) -> Result<Option<StoredUser>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND platform = $2 AND id = $3"
        ))
        .bind(org.as_str())
        .bind(platform.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading the user", e))?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_memberships(
        &self,
        org: &OrgId,
        connection: &ConnectionId,
        team: &TeamId,
    ) -> Result<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT team_id, user_id, is_owner FROM memberships WHERE org_id = $1 \
             AND connection_id = $2 AND team_id = $3 AND removed = FALSE ORDER BY user_id",
        )
        .bind(org.as_str())
        .bind(connection.as_str())
        .bind(team.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("listing memberships", e))?;
        rows.iter()
            .map(|r| {
                Ok(Membership {
                    team: parse_col(r, "memberships", "team_id")?,
                    user: parse_col(r, "memberships", "user_id")?,
                    is_owner: col(r, "is_owner")?,
                })
            })
            .collect()
    }

    async fn counterpart(
        &self,
        org: &OrgId,
        platform: PlatformKind,
        user: &UserId,
        target: PlatformKind,
    ) -> Result<Option<UserId>> {
        if platform == target {
            return Ok(Some(user.clone()));
        }
        // One statement: the manual link if there is one, else the email match (a live user
        // on the target platform with the same email, unless that user is manually linked to
        // someone on our platform or the pair was separated).
        let row = sqlx::query(
            "SELECT COALESCE(\
               (SELECT target_user_id FROM identity_links WHERE org_id = $1 AND platform = $2 \
                AND user_id = $3 AND target_platform = $4), \
               (SELECT t.id FROM users s JOIN users t ON t.org_id = s.org_id \
                AND t.platform = $4 AND t.email_norm = s.email_norm \
                WHERE s.org_id = $1 AND s.platform = $2 AND s.id = $3 AND s.email_norm IS NOT NULL \
                AND t.removed = FALSE AND t.is_deleted = FALSE \
                AND NOT EXISTS (SELECT 1 FROM identity_links l WHERE l.org_id = t.org_id \
                    AND l.platform = t.platform AND l.user_id = t.id AND l.target_platform = $2) \
                AND NOT EXISTS (SELECT 1 FROM identity_separations x WHERE x.org_id = s.org_id \
                    AND x.platform = s.platform AND x.user_id = s.id \
                    AND x.target_platform = t.platform AND x.target_user_id = t.id) \
                ORDER BY t.is_bot, t.id LIMIT 1)) AS id",
        )
        .bind(org.as_str())
        .bind(platform.as_str())
        .bind(user.as_str())
        .bind(target.as_str())
        .fetch_one(&self.read)
        .await
        .map_err(|e| db_err("matching identities", e))?;
        parse_opt_col(&row, "users", "id")
    }

    async fn link_identities(
        &self,
        org: &OrgId,
        a: (PlatformKind, &UserId),
        b: (PlatformKind, &UserId),
    ) -> Result<()> {
        if a.0 == b.0 {
            return Err(Error::invalid(
                "a manual identity link joins users of two different platforms",
            ));
        }
        let mut tx = self.begin().await?;
        Self::require_user(&mut tx, org, a.0, a.1).await?;
        Self::require_user(&mut tx, org, b.0, b.1).await?;
        // Drop the links of both users towards each other's platform (and stale reverse
        // links pointing at them), then link them both ways.
        sqlx::query(
            "DELETE FROM identity_links WHERE org_id = $1 AND (\
               (platform = $2 AND user_id = $3 AND target_platform = $4) \
               OR (platform = $4 AND user_id = $5 AND target_platform = $2) \
               OR (platform = $4 AND target_platform = $2 AND target_user_id = $3) \
               OR (platform = $2 AND target_platform = $4 AND target_user_id = $5))",
        )
        .bind(org.as_str())
        .bind(a.0.as_str())
        .bind(a.1.as_str())
        .bind(b.0.as_str())
        .bind(b.1.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("replacing identity links", e))?;
        Self::delete_separation(&mut tx, org, a, b).await?;
        let now = now_ns();
        for (from, to) in [(a, b), (b, a)] {
            sqlx::query(
                "INSERT INTO identity_links (org_id, platform, user_id, target_platform, \
                 target_user_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(org.as_str())
            .bind(from.0.as_str())
            .bind(from.1.as_str())
            .bind(to.0.as_str())
            .bind(to.1.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("storing the identity link", e))?;
        }
        Self::commit(tx).await
    }

    async fn unlink_identity(&self, org: &OrgId, user: (PlatformKind, &UserId)) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = Self::delete_links_of(&mut tx, org, user.0, user.1).await?;
        if n == 0 {
            return Err(Error::not_found(format!(
                "{} user {} has no manual identity link",
                user.0, user.1
            )));
        }
        Self::commit(tx).await
    }

    async fn list_identity_links(&self, org: &OrgId) -> Result<Vec<IdentityLink>> {
        self.list_pairs(org, "identity_links").await
    }

    async fn separate_identities(
        &self,
        org: &OrgId,
        a: (PlatformKind, &UserId),
        b: (PlatformKind, &UserId),
    ) -> Result<()> {
        if a.0 == b.0 {
            return Err(Error::invalid(
                "a separation is between users of two different platforms",
            ));
        }
        let mut tx = self.begin().await?;
        Self::require_user(&mut tx, org, a.0, a.1).await?;
        Self::require_user(&mut tx, org, b.0, b.1).await?;
        // A manual link between the two goes (either direction).
        sqlx::query(
            "DELETE FROM identity_links WHERE org_id = $1 AND (\
               (platform = $2 AND user_id = $3 AND target_platform = $4 AND target_user_id = $5) \
               OR (platform = $4 AND user_id = $5 AND target_platform = $2 AND target_user_id = $3))",
        )
        .bind(org.as_str())
        .bind(a.0.as_str())
        .bind(a.1.as_str())
        .bind(b.0.as_str())
        .bind(b.1.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("removing the identity link", e))?;
        Self::delete_separation(&mut tx, org, a, b).await?;
        let now = now_ns();
        for (from, to) in [(a, b), (b, a)] {
            sqlx::query(
                "INSERT INTO identity_separations (org_id, platform, user_id, target_platform, \
                 target_user_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(org.as_str())
            .bind(from.0.as_str())
            .bind(from.1.as_str())
            .bind(to.0.as_str())
            .bind(to.1.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("storing the identity separation", e))?;
        }
        Self::commit(tx).await
    }

    async fn list_identity_separations(&self, org: &OrgId) -> Result<Vec<IdentityLink>> {
        self.list_pairs(org, "identity_separations").await
    }
}
