// The recording platforms and the world of the relay's pipeline tests, shared with the
// engine benchmark (`benches/relay.rs`): both `include!` this file, so its items keep the
// includer's imports and privacy.

/// What a recording platform was asked to do.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Post {
        channel: ChannelRef,
        id: String,
        reply_to: Option<String>,
        text: String,
        marker: Option<String>,
        mentions: Vec<String>,
    },
    Edit {
        id: String,
        text: String,
        by: PostingIdentity,
    },
    Delete {
        id: String,
    },
    React {
        id: String,
        change: ReactionChange,
    },
}

#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    next: Mutex<u32>,
    /// Errors to answer the next posts with, in order.
    fail_posts: Mutex<Vec<Error>>,
    /// The account the connection acts as (`svc` unless a migration changed it).
    account: Mutex<Option<String>>,
    /// Which account posted each message when not `svc`: only that one may edit or delete
    /// it, as on Teams.
    authors: Mutex<HashMap<String, String>>,
    /// Users whose own token was handed over (`link_user`): asked to, posts go out as them.
    linked: Mutex<std::collections::HashSet<UserId>>,
    /// The identity of every reaction call, in order.
    reacted_as: Mutex<Vec<PostingIdentity>>,
    /// The messages change hints were resolved for (each a fetch from the platform).
    resolved: Mutex<Vec<String>>,
}

impl Recorder {
    fn account(&self) -> String {
        self.account.lock().clone().unwrap_or_else(|| "svc".into())
    }
    /// Refuses a change of `id` by anyone but the account that posted it.
    fn check_author(&self, id: &str) -> Result<()> {
        let author = self.authors.lock().get(id).cloned();
        if author.as_deref().unwrap_or("svc") == self.account() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Forbidden,
                "only the sender may change this message",
            ))
        }
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }
    fn posts(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Post { .. }))
            .collect()
    }
}

fn unsupported<T>() -> Result<T> {
    Err(Error::new(ErrorKind::Unsupported, "not in this fake"))
}

#[async_trait]
impl Platform for Recorder {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Msteams
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            reactions: true,
            edits: true,
            deletes: true,
            file_upload: false,
            sender_attribution: true,
        }
    }
    async fn identity(&self) -> Result<AccountIdentity> {
        let account = self.account();
        Ok(AccountIdentity {
            user_id: UserId::new(account.clone()).unwrap(),
            display_name: account,
            is_service_account: true,
        })
    }
    async fn post(&self, channel: &ChannelRef, m: &OutgoingMessage) -> Result<PostedMessage> {
        {
            let mut fails = self.fail_posts.lock();
            if !fails.is_empty() {
                return Err(fails.remove(0));
            }
        }
        let id = {
            let mut n = self.next.lock();
            *n += 1;
            format!("copy-{}", *n)
        };
        if let Some(account) = self.account.lock().clone() {
            self.authors.lock().insert(id.clone(), account);
        }
        self.calls.lock().push(Call::Post {
            channel: channel.clone(),
            id: id.clone(),
            reply_to: m.reply_to.as_ref().map(|r| r.to_string()),
            text: m.content.text.to_plain_text(),
            marker: m.marker.clone(),
            mentions: m
                .content
                .text
                .mentioned_users()
                .into_iter()
                .map(|u| u.to_string())
                .collect(),
        });
        Ok(PostedMessage {
            reference: MessageRef {
                channel: channel.clone(),
                message: MessageId::new(id).unwrap(),
                thread_root: m.reply_to.clone(),
            },
            extra_parts: vec![],
            // Like the Teams adapter: as the linked user only with their token, else the
            // service account (and it says so).
            posted_by: match &m.post_as {
                PostingIdentity::LinkedUser { user } if self.linked.lock().contains(user) => {
                    m.post_as.clone()
                }
                _ => PostingIdentity::ServiceAccount,
            },
        })
    }
    async fn edit(&self, r: &MessageRef, m: &OutgoingMessage, by: &PostingIdentity) -> Result<()> {
        // Like both platforms: only what we posted may be edited (a person's own message
        // cannot be, by the bot or service account).
        if !r.message.as_str().starts_with("copy-") {
            return Err(Error::new(
                ErrorKind::Forbidden,
                "only the author may edit this message",
            ));
        }
        self.calls.lock().push(Call::Edit {
            id: r.message.to_string(),
            text: m.content.text.to_plain_text(),
            by: by.clone(),
        });
        self.check_author(r.message.as_str())
    }
    async fn delete(&self, r: &MessageRef, _: &PostingIdentity) -> Result<()> {
        self.calls.lock().push(Call::Delete {
            id: r.message.to_string(),
        });
        self.check_author(r.message.as_str())
    }
    async fn react(
        &self,
        r: &MessageRef,
        _: &Emoji,
        change: ReactionChange,
        identity: &PostingIdentity,
    ) -> Result<()> {
        // Like the Teams adapter: as a linked user only with their token.
        if let PostingIdentity::LinkedUser { user } = identity
            && !self.linked.lock().contains(user)
        {
            return Err(Error::new(ErrorKind::Forbidden, "no token for that user"));
        }
        self.reacted_as.lock().push(identity.clone());
        self.calls.lock().push(Call::React {
            id: r.message.to_string(),
            change,
        });
        Ok(())
    }
    async fn fetch_attachment(&self, _: &Attachment, _: u64) -> Result<FileContent> {
        unsupported()
    }
    async fn health(&self) -> Result<ConnectionHealth> {
        Ok(ConnectionHealth::Ok)
    }
    async fn link_user(
        &self,
        user: UserId,
        _: Credentials,
        _: Arc<dyn CredentialsSink>,
    ) -> Result<()> {
        self.linked.lock().insert(user);
        Ok(())
    }
    fn unlink_user(&self, user: &UserId) {
        self.linked.lock().remove(user);
    }
}

#[async_trait]
impl ServiceAccount for Recorder {
    async fn verify(&self, _: VerifyOptions) -> Result<AccessReport> {
        unsupported()
    }
    async fn ensure_membership(&self, _: &ChannelRef) -> Result<MembershipOutcome> {
        unsupported()
    }
    async fn refresh_credentials(&self) -> Result<Credentials> {
        unsupported()
    }
}

#[async_trait]
impl TeamImport for Recorder {
    async fn list_teams(&self) -> Result<TeamListing> {
        unsupported()
    }
    async fn import_team(&self, _: &TeamId, _: &mut dyn ImportSink) -> Result<ImportCounts> {
        unsupported()
    }
    async fn import_users(&self, _: &mut dyn ImportSink) -> Result<ImportCounts> {
        unsupported()
    }
}

#[async_trait]
impl History for Recorder {
    async fn changes_since(
        &self,
        _: &ChannelRef,
        _: &HistoryStart,
        _: usize,
    ) -> Result<HistoryPage> {
        unsupported()
    }
    async fn recent_messages(
        &self,
        _: &ChannelRef,
        _: OffsetDateTime,
        _: usize,
    ) -> Result<Vec<RecentMessage>> {
        unsupported()
    }
}

/// Resolves a change hint as a fetch that finds nothing to relay, and records it.
#[async_trait]
impl Resolver for Recorder {
    async fn resolve(
        &self,
        hint: &ChangeHint,
        _last_seen: Option<&MessageSnapshot>,
    ) -> Result<Resolved> {
        self.resolved.lock().push(hint.message.as_str().to_owned());
        // `flaky-…` messages: the first fetch fails (a 503), then they resolve to a post
        // whose text is the id.
        // `throttled-…` ones: the first fetch is answered 429 with a Retry-After of 100 ms.
        let flaky = hint.message.as_str().strip_prefix("flaky-");
        let throttled = hint.message.as_str().strip_prefix("throttled-");
        if let Some(id) = flaky.or(throttled) {
            let first = self.resolved.lock().iter().filter(|m| **m == hint.message.as_str()).count() == 1;
            if first && flaky.is_some() {
                return Err(Error::new(ErrorKind::Upstream, "503 from the platform"));
            }
            if first {
                return Err(Error::new(
                    ErrorKind::RateLimited {
                        retry_after: Some(Duration::from_millis(100)),
                    },
                    "429 from the platform",
                ));
            }
            return Ok(Resolved {
                events: vec![PlatformEvent {
                    event_id: format!("resolved-{id}"),
                    channel: hint.channel.clone(),
                    occurred_at: hint.received_at,
                    kind: posted(hint.message.as_str(), None, RichText::plain(id)),
                }],
                snapshot: None,
            });
        }
        Ok(Resolved {
            events: Vec::new(),
            snapshot: None,
        })
    }
}

struct Fakes(HashMap<ConnectionId, Arc<Recorder>>);

#[async_trait]
impl Connections for Fakes {
    async fn get(&self, _: &OrgId, connection: &ConnectionId) -> Result<Connected> {
        let r = self
            .0
            .get(connection)
            .cloned()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "no such connection"))?;
        Ok(Connected {
            platform: r.clone(),
            account: r.clone(),
            import: r.clone(),
            history: r.clone(),
            resolver: Some(r),
            feeds: None,
        })
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    org: OrgId,
    slack: ConnectionId,
    teams_rec: Arc<Recorder>,
    slack_rec: Arc<Recorder>,
    relay: Relay,
    slack_ch: ChannelRef,
    teams_ch: ChannelRef,
}

fn connection(org: &OrgId, platform: PlatformKind, tenant: &str) -> Connection {
    Connection {
        id: ConnectionId::generate(),
        org: org.clone(),
        platform,
        tenant: TenantId::new(tenant).unwrap(),
        enterprise: None,
        display_name: tenant.into(),
        account: AccountIdentity {
            user_id: UserId::new("svc").unwrap(),
            display_name: "svc".into(),
            is_service_account: true,
        },
        health: ConnectionHealth::Ok,
        created_at: OffsetDateTime::now_utc(),
    }
}

fn user(id: &str, name: &str, email: &str) -> User {
    User {
        id: UserId::new(id).unwrap(),
        display_name: name.into(),
        email: Some(email.into()),
        avatar_url: None,
        is_guest: false,
        is_bot: false,
        is_deleted: false,
    }
}

async fn import(
    store: &dyn Store,
    org: &OrgId,
    conn: &Connection,
    team: &str,
    chan: &str,
    users: &[User],
) {
    let run = store.begin_import(org, &conn.id).await.unwrap();
    let team_id = TeamId::new(team).unwrap();
    store
        .upsert_teams(
            org,
            &conn.id,
            run,
            &[Team {
                id: team_id.clone(),
                name: team.into(),
                description: None,
            }],
        )
        .await
        .unwrap();
    store
        .upsert_channels(
            org,
            &conn.id,
            run,
            &[Channel {
                id: ChannelId::new(chan).unwrap(),
                team: team_id.clone(),
                name: "general".into(),
                kind: ChannelKind::Standard,
                description: None,
            }],
        )
        .await
        .unwrap();
    store
        .finish_team_import(org, &conn.id, run, &team_id)
        .await
        .unwrap();
    store.upsert_users(org, &conn.id, run, users).await.unwrap();
    store.finish_user_import(org, &conn.id, run).await.unwrap();
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(tune: impl FnOnce(&mut RelayConfig)) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::sqlite(dir.path().join("r.db"), Keyring::new(MasterKey::generate()))
        .await
        .unwrap()
        .shared();
    let org = store.create_org("Contoso").await.unwrap().id;
    let slack = connection(&org, PlatformKind::Slack, "T1");
    let teams = connection(&org, PlatformKind::Msteams, "tenant");
    store.put_connection(&slack).await.unwrap();
    store.put_connection(&teams).await.unwrap();
    import(
        store.as_ref(),
        &org,
        &slack,
        "T1",
        "C1",
        &[
            user("U1", "Jane Doe", "jane@contoso.test"),
            user("U2", "Ravi Rao", "ravi@contoso.test"),
        ],
    )
    .await;
    let aad = "0b9e3b7f-0000-4000-8000-0000000000a1";
    import(
        store.as_ref(),
        &org,
        &teams,
        "team-1",
        "19:c@thread.tacv2",
        &[user(aad, "Jane Doe", "JANE@contoso.test")],
    )
    .await;
    let slack_ch: ChannelRef = "slack:T1/C1".parse().unwrap();
    let teams_ch: ChannelRef = "msteams:team-1/19:c@thread.tacv2".parse().unwrap();
    let uc = UniversalChannel::new(
        UniversalChannelId::generate(),
        org.clone(),
        "general",
        vec![
            Endpoint {
                connection: slack.id.clone(),
                channel: slack_ch.clone(),
            },
            Endpoint {
                connection: teams.id.clone(),
                channel: teams_ch.clone(),
            },
        ],
    )
    .unwrap();
    store.create_universal_channel(&uc).await.unwrap();
    let teams_rec = Arc::new(Recorder::default());
    let slack_rec = Arc::new(Recorder::default());
    let mut map = HashMap::new();
    map.insert(teams.id.clone(), teams_rec.clone());
    map.insert(slack.id.clone(), slack_rec.clone());
    let mut config = RelayConfig {
        base_backoff: Duration::ZERO,
        ..RelayConfig::default()
    };
    tune(&mut config);
    let relay = Relay::new(
        store.clone(),
        Arc::new(Fakes(map)),
        WorkerId::new("test").unwrap(),
        config,
    );
    World {
        _dir: dir,
        store,
        org,
        slack: slack.id,
        teams_rec,
        slack_rec,
        relay,
        slack_ch,
        teams_ch,
    }
}

fn sender() -> Sender {
    Sender {
        platform: PlatformKind::Slack,
        user: UserId::new("U1").unwrap(),
        display_name: String::new(),
        avatar_url: None,
        email: None,
    }
}

fn event(id: &str, channel: &ChannelRef, kind: EventKind) -> Inbound {
    Inbound::Event(PlatformEvent {
        event_id: id.into(),
        channel: channel.clone(),
        occurred_at: OffsetDateTime::now_utc(),
        kind,
    })
}

fn posted(ts: &str, root: Option<&str>, text: RichText) -> EventKind {
    EventKind::Posted {
        message: MessageId::new(ts).unwrap(),
        content: PortableMessage {
            sender: sender(),
            text,
            attachments: vec![],
            thread_root: root.map(|r| MessageId::new(r).unwrap()),
        },
    }
}

impl World {
    async fn accept(&self, conn: &ConnectionId, item: Inbound) {
        self.store
            .inbox_accept(&self.org, conn, &item)
            .await
            .unwrap();
    }
    /// Translates and delivers until both queues are empty.
    async fn settle(&self) -> Vec<DeliveryOutcome> {
        let mut all = Vec::new();
        for _ in 0..20 {
            let t = self.relay.translate_batch().await.unwrap();
            let d = self.relay.deliver_batch().await.unwrap();
            let idle = t == 0 && d.is_empty();
            all.extend(d);
            if idle {
                // Events held back for late ones are due soon: wait for them as the
                // server's worker does.
                match self.relay.next_held() {
                    Some(due) => tokio::time::sleep_until(due.into()).await,
                    None => break,
                }
            }
        }
        all
    }
}
