//! The emulated workspace: users, channels, memberships, messages, files, and the seeds.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use crate::Seed;

/// Alphabet of Slack-style IDs.
const ID_ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A 64-bit mixer (splitmix64 finaliser) used to derive deterministic, random-looking IDs.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A deterministic Slack-style ID: `prefix` + 10 characters of `[0-9A-Z]`.
pub(crate) fn seeded_id(prefix: &str, kind: u64, n: u64) -> String {
    let mut x = mix(mix(kind) ^ n);
    let mut s = String::with_capacity(prefix.len() + 10);
    s.push_str(prefix);
    for _ in 0..10 {
        s.push(ID_ALPHABET[(x % 36) as usize] as char);
        x /= 36;
    }
    s
}

/// A random Slack-style ID: `prefix` + 10 characters of `[0-9A-Z]` (event and file IDs, which
/// must not repeat across sandbox restarts).
pub(crate) fn random_id(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(prefix.len() + 10);
    s.push_str(prefix);
    for _ in 0..10 {
        s.push(ID_ALPHABET[rng.gen_range(0..36)] as char);
    }
    s
}

/// Formats a timestamp kept as microseconds since the epoch the way Slack does: `1700000000.000100`.
pub(crate) fn fmt_ts(ts: u64) -> String {
    format!("{}.{:06}", ts / 1_000_000, ts % 1_000_000)
}

/// Parses a Slack timestamp (`1700000000.000100`, or `1700000000`) into microseconds.
pub(crate) fn parse_ts(s: &str) -> Option<u64> {
    let s = s.trim();
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    if secs.is_empty()
        || secs.len() > 12
        || frac.len() > 6
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut micros: u64 = 0;
    for i in 0..6 {
        micros = micros * 10 + frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
    }
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// What kind of account a user is.
#[derive(Debug, Clone)]
pub(crate) enum UserKind {
    Person,
    Bot { bot_id: String, app_id: String },
}

/// A workspace member.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub real_name: String,
    pub display_name: String,
    pub email: Option<String>,
    pub kind: UserKind,
    pub deleted: bool,
    pub is_admin: bool,
    pub is_owner: bool,
    pub is_primary_owner: bool,
    pub updated: u64,
}

impl User {
    pub fn is_bot(&self) -> bool {
        matches!(self.kind, UserKind::Bot { .. })
    }
    pub fn bot_id(&self) -> Option<&str> {
        match &self.kind {
            UserKind::Bot { bot_id, .. } => Some(bot_id),
            UserKind::Person => None,
        }
    }
}

/// One emoji reaction on a message.
#[derive(Debug, Clone)]
pub(crate) struct Reaction {
    pub name: String,
    pub users: Vec<u32>,
}

/// A message as stored.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// Microseconds since the epoch (unique per workspace).
    pub ts: u64,
    /// The author (for bot posts: the bot user).
    pub user: u32,
    pub bot_id: Option<String>,
    pub app_id: Option<String>,
    pub username: Option<String>,
    pub icon_url: Option<String>,
    pub icon_emoji: Option<String>,
    pub text: String,
    pub blocks: Option<Value>,
    pub subtype: Option<&'static str>,
    pub thread_ts: Option<u64>,
    /// For a thread parent: the replies' timestamps, oldest first.
    pub replies: Vec<u64>,
    pub metadata: Option<Value>,
    pub reactions: Vec<Reaction>,
    pub files: Vec<String>,
    /// `(editor, edit ts)`.
    pub edited: Option<(u32, u64)>,
    pub deleted: bool,
}

impl Message {
    pub fn new(ts: u64, user: u32, text: String) -> Message {
        Message {
            ts,
            user,
            bot_id: None,
            app_id: None,
            username: None,
            icon_url: None,
            icon_emoji: None,
            text,
            blocks: None,
            subtype: None,
            thread_ts: None,
            replies: Vec::new(),
            metadata: None,
            reactions: Vec::new(),
            files: Vec::new(),
            edited: None,
            deleted: false,
        }
    }

    /// Whether this message shows in the channel's history (top level or broadcast reply).
    pub fn in_channel_history(&self) -> bool {
        !self.deleted
            && (self.thread_ts.is_none()
                || self.thread_ts == Some(self.ts)
                || self.subtype == Some("thread_broadcast"))
    }

    /// Whether this message is a reply inside a thread (not its parent).
    pub fn is_reply(&self) -> bool {
        matches!(self.thread_ts, Some(t) if t != self.ts)
    }
}

/// A channel (public `C…` or private `G…`).
#[derive(Debug, Clone)]
pub(crate) struct Channel {
    pub id: String,
    pub name: String,
    pub is_private: bool,
    pub is_archived: bool,
    pub is_general: bool,
    pub created: u64,
    pub creator: u32,
    pub topic: String,
    pub purpose: String,
    pub members: BTreeSet<u32>,
    /// Sorted by `ts`.
    pub messages: Vec<Message>,
}

impl Channel {
    pub fn find(&self, ts: u64) -> Option<usize> {
        self.messages.binary_search_by_key(&ts, |m| m.ts).ok()
    }
}

/// An uploaded file.
#[derive(Debug, Clone)]
pub(crate) struct FileRec {
    pub id: String,
    pub name: String,
    pub title: String,
    pub mimetype: String,
    pub filetype: String,
    pub user: u32,
    pub created: u64,
    /// Declared length (`files.getUploadURLExternal`).
    pub length: u64,
    /// `None` until the bytes were uploaded.
    pub bytes: Option<Arc<Vec<u8>>>,
    /// Channels the file was shared to.
    pub channels: Vec<u32>,
    pub completed: bool,
}

/// The emulated workspace.
#[derive(Debug)]
pub(crate) struct Workspace {
    pub team_id: String,
    pub team_name: String,
    pub domain: String,
    pub email_domain: String,
    pub users: Vec<User>,
    pub user_ix: HashMap<String, u32>,
    pub user_by_name: HashMap<String, u32>,
    pub user_by_email: HashMap<String, u32>,
    pub channels: Vec<Channel>,
    pub chan_ix: HashMap<String, u32>,
    pub chan_by_name: HashMap<String, u32>,
    /// The app's bot user.
    pub bot_user: u32,
    /// The user who approves OAuth installs (the primary owner).
    pub installer: u32,
    pub files: HashMap<String, FileRec>,
    /// Upload ticket → file id.
    pub uploads: HashMap<String, String>,
    last_ts: u64,
}

/// Immutable facts about the app installed in the workspace.
#[derive(Clone)]
pub(crate) struct AppInfo {
    pub team_id: String,
    pub team_name: String,
    pub app_id: String,
    pub app_name: String,
    pub client_id: String,
    pub client_secret: String,
    pub signing_secret: String,
    pub verification_token: String,
    pub bot_user_id: String,
    pub bot_id: String,
}

impl std::fmt::Debug for AppInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppInfo")
            .field("team_id", &self.team_id)
            .field("app_id", &self.app_id)
            .field("client_id", &self.client_id)
            .field("bot_user_id", &self.bot_user_id)
            .finish_non_exhaustive()
    }
}

/// ID kinds for [`seeded_id`].
const KIND_TEAM: u64 = 1;
const KIND_APP: u64 = 2;
const KIND_BOT: u64 = 3;
const KIND_USER: u64 = 4;
const KIND_CHANNEL: u64 = 5;

/// Number of generated users in the large seed.
pub(crate) const LARGE_USERS: u32 = 20_000;
/// Total channels in the large seed.
pub(crate) const LARGE_CHANNELS: u32 = 5_000;

/// Seed epoch for `created`/`updated` fields (2023-11-14).
const SEED_EPOCH: u64 = 1_700_000_000;

struct Builder {
    ws: Workspace,
    used_ids: HashSet<String>,
}

impl Builder {
    fn unique_id(&mut self, prefix: &str, kind: u64, n: u64) -> String {
        let mut salt = 0u64;
        loop {
            let id = seeded_id(prefix, kind, n ^ (salt << 40));
            if self.used_ids.insert(id.clone()) {
                return id;
            }
            salt += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn user(
        &mut self,
        name: &str,
        real_name: &str,
        display_name: &str,
        email: Option<&str>,
        kind: UserKind,
        deleted: bool,
    ) -> u32 {
        let ix = self.ws.users.len() as u32;
        let id = self.unique_id("U", KIND_USER, u64::from(ix));
        self.ws.user_ix.insert(id.clone(), ix);
        self.ws.user_by_name.insert(name.to_owned(), ix);
        if let Some(e) = email {
            self.ws.user_by_email.insert(e.to_ascii_lowercase(), ix);
        }
        self.ws.users.push(User {
            id,
            name: name.to_owned(),
            real_name: real_name.to_owned(),
            display_name: display_name.to_owned(),
            email: email.map(str::to_owned),
            kind,
            deleted,
            is_admin: false,
            is_owner: false,
            is_primary_owner: false,
            updated: SEED_EPOCH + u64::from(ix),
        });
        ix
    }

    fn channel(
        &mut self,
        name: &str,
        is_private: bool,
        is_archived: bool,
        purpose: &str,
        members: &[u32],
    ) -> u32 {
        let ix = self.ws.channels.len() as u32;
        let id = self.unique_id(
            if is_private { "G" } else { "C" },
            KIND_CHANNEL,
            u64::from(ix),
        );
        self.ws.chan_ix.insert(id.clone(), ix);
        self.ws.chan_by_name.insert(name.to_owned(), ix);
        self.ws.channels.push(Channel {
            id,
            name: name.to_owned(),
            is_private,
            is_archived,
            is_general: false,
            created: SEED_EPOCH + u64::from(ix),
            creator: self.ws.installer,
            topic: String::new(),
            purpose: purpose.to_owned(),
            members: members.iter().copied().collect(),
            messages: Vec::new(),
        });
        ix
    }
}

/// Builds the seeded workspace and the app facts (secrets are random per start).
pub(crate) fn build(seed: Seed) -> (Workspace, AppInfo) {
    let team_id = seeded_id("T", KIND_TEAM, 0);
    let app_id = seeded_id("A", KIND_APP, 0);
    let other_app_id = seeded_id("A", KIND_APP, 1);
    let bot_id = seeded_id("B", KIND_BOT, 0);
    let other_bot_id = seeded_id("B", KIND_BOT, 1);
    let mut b = Builder {
        ws: Workspace {
            team_id: team_id.clone(),
            team_name: "Contoso".into(),
            domain: "contoso".into(),
            email_domain: "contoso.com".into(),
            users: Vec::new(),
            user_ix: HashMap::new(),
            user_by_name: HashMap::new(),
            user_by_email: HashMap::new(),
            channels: Vec::new(),
            chan_ix: HashMap::new(),
            chan_by_name: HashMap::new(),
            bot_user: 0,
            installer: 0,
            files: HashMap::new(),
            uploads: HashMap::new(),
            last_ts: 0,
        },
        used_ids: HashSet::new(),
    };
    for id in [&team_id, &app_id, &other_app_id, &bot_id, &other_bot_id] {
        b.used_ids.insert(id.clone());
    }
    let extra = if seed == Seed::Large {
        LARGE_USERS as usize
    } else {
        0
    };
    b.ws.users.reserve(8 + extra);
    b.ws.user_ix.reserve(8 + extra);
    b.ws.user_by_name.reserve(8 + extra);
    b.ws.user_by_email.reserve(8 + extra);

    let p = UserKind::Person;
    let alice = b.user(
        "alice",
        "Alice Johnson",
        "Alice",
        Some("alice@contoso.com"),
        p.clone(),
        false,
    );
    let bob = b.user(
        "bob",
        "Bob Smith",
        "Bob",
        Some("bob@contoso.com"),
        p.clone(),
        false,
    );
    let carol = b.user(
        "carol",
        "Carol Diaz",
        "Carol",
        Some("carol@contoso.com"),
        p.clone(),
        false,
    );
    let dan = b.user(
        "dan",
        "Dan Wu",
        "Dan",
        Some("dan@contoso.com"),
        p.clone(),
        false,
    );
    let erin = b.user(
        "erin",
        "Erin Kim",
        "Erin",
        Some("erin@contoso.com"),
        p.clone(),
        false,
    );
    let bot = b.user(
        "switchboard",
        "Switchboard",
        "",
        None,
        UserKind::Bot {
            bot_id: bot_id.clone(),
            app_id: app_id.clone(),
        },
        false,
    );
    let deploybot = b.user(
        "deploybot",
        "Deploy Bot",
        "",
        None,
        UserKind::Bot {
            bot_id: other_bot_id,
            app_id: other_app_id,
        },
        false,
    );
    let frank = b.user(
        "frank",
        "Frank Old",
        "Frank",
        Some("frank@contoso.com"),
        p.clone(),
        true,
    );
    {
        let a = &mut b.ws.users[alice as usize];
        a.is_admin = true;
        a.is_owner = true;
        a.is_primary_owner = true;
    }
    b.ws.bot_user = bot;
    b.ws.installer = alice;

    let people = [alice, bob, carol, dan, erin];
    let general = b.channel(
        "general",
        false,
        false,
        "This is the one channel that will always include everyone.",
        &[alice, bob, carol, dan, erin, bot],
    );
    b.ws.channels[general as usize].is_general = true;
    b.channel("random", false, false, "Non-work banter.", &people);
    b.channel(
        "engineering",
        false,
        false,
        "Engineering discussions.",
        &[alice, bob, carol, dan, bot, deploybot],
    );
    b.channel(
        "marketing",
        false,
        false,
        "Marketing.",
        &[alice, carol, erin],
    );
    b.channel(
        "leadership",
        true,
        false,
        "Leadership (private).",
        &[alice, bob],
    );
    b.channel(
        "old-project",
        false,
        true,
        "An archived project.",
        &[alice, carol, frank],
    );

    if seed == Seed::Large {
        let first = b.ws.users.len() as u32;
        for i in 1..=LARGE_USERS {
            let name = format!("user{i:05}");
            let email = format!("user{i:05}@contoso.com");
            let real = format!("User {i:05}");
            b.user(&name, &real, "", Some(&email), p.clone(), false);
        }
        let small = b.ws.channels.len() as u32;
        b.ws.channels.reserve((LARGE_CHANNELS - small) as usize);
        for i in 1..=(LARGE_CHANNELS - small) {
            let private = i % 10 == 0;
            let mut members: Vec<u32> = (0..5u32)
                .map(|k| first + (i * 37 + k * 4001) % LARGE_USERS)
                .collect();
            if private {
                members.push(bot);
            }
            let name = format!("channel-{i:04}");
            b.channel(&name, private, false, "", &members);
        }
    }

    let ws = b.ws;
    let app = AppInfo {
        team_id,
        team_name: ws.team_name.clone(),
        app_id,
        app_name: "Switchboard".into(),
        client_id: format!(
            "{}.{}",
            1_000_000_000 + mix(11) % 9_000_000_000,
            1_000_000_000 + mix(12) % 9_000_000_000
        ),
        client_secret: hex::encode(rand::random::<[u8; 16]>()),
        signing_secret: hex::encode(rand::random::<[u8; 16]>()),
        verification_token: crate::util::random_token(24),
        bot_user_id: ws.users[ws.bot_user as usize].id.clone(),
        bot_id,
    };
    (ws, app)
}

impl Workspace {
    /// A fresh, strictly increasing message timestamp.
    pub fn next_ts(&mut self) -> u64 {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        self.last_ts = now_us.max(self.last_ts + 1);
        self.last_ts
    }

    /// Looks a user up by id, name or email.
    pub fn find_user(&self, key: &str) -> Option<u32> {
        let key = key.trim();
        let key = key.strip_prefix('@').unwrap_or(key);
        self.user_ix
            .get(key)
            .or_else(|| self.user_by_name.get(key))
            .or_else(|| self.user_by_email.get(&key.to_ascii_lowercase()))
            .copied()
    }

    /// Looks a channel up by id or name (`#name` accepted).
    pub fn find_channel(&self, key: &str) -> Option<u32> {
        let key = key.trim();
        let key = key.strip_prefix('#').unwrap_or(key);
        self.chan_ix
            .get(key)
            .or_else(|| self.chan_by_name.get(key))
            .copied()
    }

    pub fn user(&self, ix: u32) -> &User {
        &self.users[ix as usize]
    }

    pub fn channel(&self, ix: u32) -> &Channel {
        &self.channels[ix as usize]
    }

    pub fn channel_mut(&mut self, ix: u32) -> &mut Channel {
        &mut self.channels[ix as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_round_trip() {
        assert_eq!(parse_ts("1700000000.000100"), Some(1_700_000_000_000_100));
        assert_eq!(fmt_ts(1_700_000_000_000_100), "1700000000.000100");
        assert_eq!(parse_ts("1700000000"), Some(1_700_000_000_000_000));
        assert_eq!(parse_ts("1700000000.5"), Some(1_700_000_000_500_000));
        assert_eq!(parse_ts("abc"), None);
        assert_eq!(parse_ts("1.2.3"), None);
        assert_eq!(parse_ts(""), None);
    }

    #[test]
    fn seeds_are_deterministic_and_unique() {
        let (a, _) = build(Seed::Small);
        let (b, _) = build(Seed::Small);
        assert_eq!(a.team_id, b.team_id);
        assert_eq!(
            a.users.iter().map(|u| &u.id).collect::<Vec<_>>(),
            b.users.iter().map(|u| &u.id).collect::<Vec<_>>()
        );
        let t = std::time::Instant::now();
        let (l, _) = build(Seed::Large);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(l.channels.len() as u32, LARGE_CHANNELS);
        assert_eq!(l.users.len() as u32, LARGE_USERS + 8);
        assert_eq!(l.user_ix.len(), l.users.len());
        assert_eq!(l.chan_ix.len(), l.channels.len());
        // the small seed is a prefix of the large one
        assert_eq!(a.users[0].id, l.users[0].id);
        assert_eq!(a.channels[0].id, l.channels[0].id);
    }
}
