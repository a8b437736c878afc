//! The relay's own state (`RelayStateStore`): the reaction ledger, combined posts and the
//! per-channel daily message counts.

use switchboard_core::{
    CombinedEntry, CombinedPost, Emoji, MAX_COMBINED_ENTRIES, PortableMessage, ReactionKey,
    ReactionTally, Reactor, RelayStateStore,
};

use super::*;

/// The stored key of an emoji: Unicode by its characters, custom ones by name.
fn emoji_key(emoji: &Emoji) -> String {
    match emoji {
        Emoji::Unicode { value, .. } => format!("u:{value}"),
        Emoji::Custom { name } => format!("c:{name}"),
    }
}

fn check_emoji(emoji: &Emoji) -> Result<()> {
    match emoji {
        Emoji::Unicode { value, .. } => limits::nonempty("emoji", value, limits::MAX_KEY_BYTES),
        Emoji::Custom { name } => limits::nonempty("emoji name", name, limits::MAX_KEY_BYTES),
    }
}

fn reactor_from_row(row: &DbRow) -> Result<Reactor> {
    Ok(Reactor {
        platform: parse_col(row, "relay_reactions", "reactor_platform")?,
        user: parse_col(row, "relay_reactions", "reactor_user")?,
        name: col_str(row, "reactor_name")?,
    })
}

impl Backend {
    async fn reactors_tx(tx: &mut Tx, org: &OrgId, key: &ReactionKey) -> Result<Vec<Reactor>> {
        let rows = sqlx::query(
            "SELECT reactor_platform, reactor_user, reactor_name FROM relay_reactions \
             WHERE org_id = $1 AND universal_id = $2 AND platform = $3 AND team_id = $4 \
             AND channel_id = $5 AND part = $6 AND emoji_key = $7 \
             ORDER BY created_at, reactor_platform, reactor_user",
        )
        .bind(org.as_str())
        .bind(key.universal.as_str())
        .bind(key.channel.platform.as_str())
        .bind(key.channel.team.as_str())
        .bind(key.channel.channel.as_str())
        .bind(i64::from(key.part))
        .bind(emoji_key(&key.emoji))
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| db_err("reading reactions", e))?;
        rows.iter().map(reactor_from_row).collect()
    }

    async fn combined_tx(
        tx: &mut Tx,
        org: &OrgId,
        channel: &ChannelRef,
        message: &str,
    ) -> Result<CombinedPost> {
        let rows = sqlx::query(
            "SELECT universal_id, content FROM combined_posts WHERE org_id = $1 \
             AND platform = $2 AND team_id = $3 AND channel_id = $4 AND message_id = $5 \
             ORDER BY position",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(message)
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| db_err("reading a combined post", e))?;
        let entries = rows
            .iter()
            .map(|r| {
                Ok(CombinedEntry {
                    universal: parse_col(r, "combined_posts", "universal_id")?,
                    content: col::<Option<String>>(r, "content")?
                        .map(|c| parse_json::<PortableMessage>("combined_posts.content", &c))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CombinedPost {
            channel: channel.clone(),
            message: parse_stored("combined_posts.message_id", message)?,
            entries,
        })
    }

    async fn combined_message_tx(
        tx: &mut Tx,
        org: &OrgId,
        universal: &UniversalMessageId,
        channel: &ChannelRef,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT message_id FROM combined_posts WHERE org_id = $1 AND platform = $2 \
             AND team_id = $3 AND channel_id = $4 AND universal_id = $5",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(universal.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| db_err("reading a combined post", e))?;
        row.map(|r| col_str(&r, "message_id")).transpose()
    }
}

fn content_json(content: &PortableMessage) -> Result<String> {
    let json = serde_json::to_string(content)
        .map_err(|e| storage(format!("could not encode a combined message: {e}")))?;
    limits::text("combined message", &json, limits::MAX_PAYLOAD_BYTES)?;
    Ok(json)
}

#[async_trait]
impl RelayStateStore for Backend {
    async fn reaction_add(
        &self,
        org: &OrgId,
        key: &ReactionKey,
        reactor: &Reactor,
    ) -> Result<ReactionTally> {
        check_emoji(&key.emoji)?;
        let emoji = serde_json::to_string(&key.emoji)
            .map_err(|e| storage(format!("could not encode an emoji: {e}")))?;
        let name = limits::truncate(&reactor.name, limits::MAX_NAME_BYTES);
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        let r = sqlx::query(
            "INSERT INTO relay_reactions (org_id, universal_id, platform, team_id, channel_id, \
             part, emoji_key, emoji, reactor_platform, reactor_user, reactor_name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        )
        .bind(org.as_str())
        .bind(key.universal.as_str())
        .bind(key.channel.platform.as_str())
        .bind(key.channel.team.as_str())
        .bind(key.channel.channel.as_str())
        .bind(i64::from(key.part))
        .bind(emoji_key(&key.emoji))
        .bind(emoji)
        .bind(reactor.platform.as_str())
        .bind(reactor.user.as_str())
        .bind(name)
        .bind(now_ns())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("recording a reaction", e))?;
        let reactors = Self::reactors_tx(&mut tx, org, key).await?;
        Self::commit(tx).await?;
        Ok(ReactionTally {
            changed: r.rows_affected() > 0,
            reactors,
        })
    }

    async fn reaction_remove(
        &self,
        org: &OrgId,
        key: &ReactionKey,
        reactor: (PlatformKind, &UserId),
    ) -> Result<ReactionTally> {
        check_emoji(&key.emoji)?;
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        let r = sqlx::query(
            "DELETE FROM relay_reactions WHERE org_id = $1 AND universal_id = $2 \
             AND platform = $3 AND team_id = $4 AND channel_id = $5 AND part = $6 \
             AND emoji_key = $7 AND reactor_platform = $8 AND reactor_user = $9",
        )
        .bind(org.as_str())
        .bind(key.universal.as_str())
        .bind(key.channel.platform.as_str())
        .bind(key.channel.team.as_str())
        .bind(key.channel.channel.as_str())
        .bind(i64::from(key.part))
        .bind(emoji_key(&key.emoji))
        .bind(reactor.0.as_str())
        .bind(reactor.1.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("removing a reaction", e))?;
        let reactors = Self::reactors_tx(&mut tx, org, key).await?;
        Self::commit(tx).await?;
        Ok(ReactionTally {
            changed: r.rows_affected() > 0,
            reactors,
        })
    }

    async fn reactions_on(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
        channel: &ChannelRef,
        part: u32,
    ) -> Result<Vec<(Emoji, Vec<Reactor>)>> {
        let rows = sqlx::query(
            "SELECT emoji_key, emoji, reactor_platform, reactor_user, reactor_name \
             FROM relay_reactions WHERE org_id = $1 AND universal_id = $2 AND platform = $3 \
             AND team_id = $4 AND channel_id = $5 AND part = $6 \
             ORDER BY created_at, reactor_platform, reactor_user",
        )
        .bind(org.as_str())
        .bind(universal.as_str())
        .bind_channel(channel)
        .bind(i64::from(part))
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("reading reactions", e))?;
        let mut out: Vec<(String, Emoji, Vec<Reactor>)> = Vec::new();
        for row in &rows {
            let key = col_str(row, "emoji_key")?;
            let reactor = reactor_from_row(row)?;
            match out.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, _, reactors)) => reactors.push(reactor),
                None => {
                    let emoji: Emoji =
                        parse_json("relay_reactions.emoji", &col_str(row, "emoji")?)?;
                    out.push((key, emoji, vec![reactor]));
                }
            }
        }
        Ok(out.into_iter().map(|(_, e, r)| (e, r)).collect())
    }

    async fn put_combined_post(&self, org: &OrgId, post: &CombinedPost) -> Result<()> {
        if post.entries.is_empty() || post.entries.len() > MAX_COMBINED_ENTRIES {
            return Err(Error::invalid(format!(
                "a combined post holds 1 to {MAX_COMBINED_ENTRIES} messages, not {}",
                post.entries.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = post.entries.iter().find(|e| !seen.insert(&e.universal)) {
            return Err(Error::invalid(format!(
                "universal message {} appears twice in one combined post",
                dup.universal
            )));
        }
        let contents = post
            .entries
            .iter()
            .map(|e| e.content.as_ref().map(content_json).transpose())
            .collect::<Result<Vec<_>>>()?;
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        // Which of the entries another post of this channel already holds: one statement.
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT universal_id, message_id FROM combined_posts WHERE org_id = ",
        );
        qb.push_bind(org.as_str());
        push_channel(&mut qb, &post.channel);
        qb.push(" AND universal_id IN (");
        push_list(&mut qb, post.entries.iter().map(|e| e.universal.as_str()));
        let taken: HashMap<String, String> = qb
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_err("reading a combined post", e))?
            .iter()
            .map(|r| Ok((col_str(r, "universal_id")?, col_str(r, "message_id")?)))
            .collect::<Result<_>>()?;
        if let Some((entry, other)) = post
            .entries
            .iter()
            .find_map(|e| taken.get(e.universal.as_str()).map(|m| (e, m)))
        {
            return Err(conflict(format!(
                "universal message {} is already combined into message {other} in {}",
                entry.universal, post.channel
            )));
        }
        let rows: Vec<(usize, &CombinedEntry, &Option<String>)> = post
            .entries
            .iter()
            .zip(&contents)
            .enumerate()
            .map(|(i, (e, c))| (i, e, c))
            .collect();
        let mut qb = QueryBuilder::<DB>::new(
            "INSERT INTO combined_posts (org_id, platform, team_id, channel_id, universal_id, \
             message_id, position, content) ",
        );
        qb.push_values(&rows, |mut b, (position, entry, content)| {
            b.push_bind(org.as_str())
                .push_bind(post.channel.platform.as_str())
                .push_bind(post.channel.team.as_str())
                .push_bind(post.channel.channel.as_str())
                .push_bind(entry.universal.as_str())
                .push_bind(post.message.as_str())
                .push_bind(i64::try_from(*position).unwrap_or(i64::MAX))
                .push_bind(content.as_deref());
        });
        qb.build()
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("recording a combined post", e))?;
        Self::commit(tx).await
    }

    async fn posted_in(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        universals: &[UniversalMessageId],
    ) -> Result<std::collections::HashSet<UniversalMessageId>> {
        let mut out = std::collections::HashSet::new();
        for chunk in universals.chunks(CHUNK) {
            let mut qb = QueryBuilder::<DB>::new("");
            for (i, table) in ["message_copies", "combined_posts"].into_iter().enumerate() {
                if i > 0 {
                    qb.push(" UNION ");
                }
                qb.push(format_args!(
                    "SELECT universal_id FROM {table} WHERE org_id = "
                ))
                .push_bind(org.as_str());
                push_channel(&mut qb, channel);
                if table == "message_copies" {
                    qb.push(" AND part = 0");
                }
                qb.push(" AND universal_id IN (");
                push_list(&mut qb, chunk.iter().map(|u| u.as_str()));
            }
            for row in qb
                .build()
                .fetch_all(&self.read)
                .await
                .map_err(|e| db_err("reading what is posted", e))?
            {
                out.insert(parse_col(&row, "message_copies", "universal_id")?);
            }
        }
        Ok(out)
    }

    async fn find_combined_post(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
        channel: &ChannelRef,
    ) -> Result<Option<CombinedPost>> {
        // One statement on the read pool: the entries of the post holding `universal`.
        let rows = sqlx::query(
            "SELECT message_id, universal_id, content FROM combined_posts WHERE org_id = $1 \
             AND platform = $2 AND team_id = $3 AND channel_id = $4 AND message_id = \
             (SELECT message_id FROM combined_posts WHERE org_id = $1 AND platform = $2 \
              AND team_id = $3 AND channel_id = $4 AND universal_id = $5) ORDER BY position",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(universal.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("reading a combined post", e))?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let message = col_str(first, "message_id")?;
        let entries = rows
            .iter()
            .map(|r| {
                Ok(CombinedEntry {
                    universal: parse_col(r, "combined_posts", "universal_id")?,
                    content: col::<Option<String>>(r, "content")?
                        .map(|c| parse_json::<PortableMessage>("combined_posts.content", &c))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(CombinedPost {
            channel: channel.clone(),
            message: parse_stored("combined_posts.message_id", &message)?,
            entries,
        }))
    }

    async fn set_combined_entry(
        &self,
        org: &OrgId,
        universal: &UniversalMessageId,
        channel: &ChannelRef,
        content: Option<&PortableMessage>,
    ) -> Result<CombinedPost> {
        let content = content.map(content_json).transpose()?;
        let mut tx = self.begin().await?;
        let r = sqlx::query(
            "UPDATE combined_posts SET content = $1 WHERE org_id = $2 AND platform = $3 \
             AND team_id = $4 AND channel_id = $5 AND universal_id = $6",
        )
        .bind(content.as_deref())
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(universal.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("updating a combined post", e))?;
        if r.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "universal message {universal} is not combined in {channel}"
            )));
        }
        let message = Self::combined_message_tx(&mut tx, org, universal, channel)
            .await?
            .ok_or_else(|| storage("a combined post vanished inside its transaction"))?;
        let post = Self::combined_tx(&mut tx, org, channel, &message).await?;
        Self::commit(tx).await?;
        Ok(post)
    }

    async fn count_posted(
        &self,
        org: &OrgId,
        channel: &ChannelRef,
        day: time::Date,
        messages: u64,
    ) -> Result<u64> {
        let add = i64::try_from(messages)
            .map_err(|_| Error::invalid(format!("{messages} messages cannot be counted")))?;
        // The hot path: one statement; an unknown organization (a foreign key failure) goes
        // the slow way, which says so.
        let fast = sqlx::query(
            "INSERT INTO daily_posts (org_id, platform, team_id, channel_id, day, messages) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id, day, platform, team_id, channel_id) \
             DO UPDATE SET messages = daily_posts.messages + excluded.messages \
             RETURNING messages",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(day_key(day))
        .bind(add)
        .fetch_one(&self.write)
        .await;
        if let Ok(row) = fast {
            return count(&row, "messages");
        }
        let mut tx = self.begin().await?;
        Self::require_org(&mut tx, org).await?;
        let row = sqlx::query(
            "INSERT INTO daily_posts (org_id, platform, team_id, channel_id, day, messages) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id, day, platform, team_id, channel_id) \
             DO UPDATE SET messages = daily_posts.messages + excluded.messages \
             RETURNING messages",
        )
        .bind(org.as_str())
        .bind_channel(channel)
        .bind(day_key(day))
        .bind(add)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_err("counting posted messages", e))?;
        let n = count(&row, "messages")?;
        Self::commit(tx).await?;
        Ok(n)
    }

    async fn posted_on(&self, org: &OrgId, day: time::Date) -> Result<Vec<(ChannelRef, u64)>> {
        let rows = sqlx::query(
            "SELECT platform, team_id, channel_id, messages FROM daily_posts \
             WHERE org_id = $1 AND day = $2 ORDER BY messages DESC, platform, team_id, channel_id",
        )
        .bind(org.as_str())
        .bind(day_key(day))
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("reading posted message counts", e))?;
        rows.iter()
            .map(|r| {
                let channel = ChannelRef {
                    platform: parse_col(r, "daily_posts", "platform")?,
                    team: parse_col(r, "daily_posts", "team_id")?,
                    channel: parse_col(r, "daily_posts", "channel_id")?,
                };
                Ok((channel, count(r, "messages")?))
            })
            .collect()
    }
}

fn day_key(day: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}
