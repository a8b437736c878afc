//! A client-side pacer that keeps a connection under Graph's documented per-tenant limits,
//! so that a normal import never sees a 429.
//!
//! Each request is classified into the limit buckets it counts against
//! ([`RateLimits`], from the throttling table of `PLATFORM_FACTS.md`), and reserves a slot in
//! every one of them at once with the generic cell rate algorithm (GCRA): a bucket of
//! `requests` per `per` allows a burst of (a fraction of) its capacity and then one request
//! every `per / requests`. Reservations are made under one short lock and the caller sleeps
//! outside it, so concurrent callers are served in reservation order without a thundering
//! herd. A 429 pushes the request's buckets back by the server's `Retry-After`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::Method;

/// `requests` per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Requests allowed in the window.
    pub requests: u32,
    /// The window.
    pub per: Duration,
}

impl Limit {
    /// `requests` per `per`.
    pub const fn new(requests: u32, per: Duration) -> Self {
        Limit { requests, per }
    }

    /// `requests` per second.
    pub const fn per_second(requests: u32) -> Self {
        Limit::new(requests, Duration::from_secs(1))
    }
}

/// The limit buckets a Graph request can count against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Bucket {
    /// Every Teams Graph call, counted for reports only: the current table has no
    /// tenant-wide "any call" limit (the old 15,000 per 10 s row is gone).
    TeamsAny,
    /// GET of one team or channel (`/teams/{id}`, `/teams/{id}/channels/{id}`) and
    /// `/me/joinedTeams`: 30 per s.
    GetTeamOrChannel,
    /// GET `/teams/{id}/members`, `/teams/{id}/channels` and a channel's members: 60 per s.
    GetMembersOrChannels,
    /// GET of channel messages (list, item, replies, delta): 20 per s.
    GetChannelMessage,
    /// POST of a channel message or reply: 50 per s.
    PostChannelMessage,
    /// POST or PUT of a channel (and PATCH of one): 30 per s.
    WriteChannel,
    /// Other GET calls for Teams (`/teams`, `filesFolder`, …): 30 per s.
    OtherGet,
    /// Other Teams calls (member add/remove, message PATCH, softDelete, reactions): 30 per s.
    OtherTeamsCall,
    /// Any call on one team (scoped by team id): 4 per s.
    PerTeam,
    /// Any call on one channel (scoped by channel id): 4 per s.
    PerChannel,
    /// Messages posted to one channel per day (scoped by channel id): 3,000 per app. Kept
    /// as a count per day, not as a pacing bucket: see [`Pacer::daily_remaining`].
    ChannelDaily,
    /// Adding a member to a team (Microsoft advises spacing these).
    AddMember,
    /// `/invitations` (per tenant for all apps).
    Invitations,
    /// Directory reads (`/me`, `/users`, `/me/transitiveMemberOf`).
    Directory,
    /// `/subscriptions`.
    Subscriptions,
    /// Drive (SharePoint) calls: file uploads and downloads.
    Files,
}

impl Bucket {
    /// A stable name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::TeamsAny => "teams_any",
            Bucket::GetTeamOrChannel => "get_team_or_channel",
            Bucket::GetMembersOrChannels => "get_members_or_channels",
            Bucket::GetChannelMessage => "get_channel_message",
            Bucket::PostChannelMessage => "post_channel_message",
            Bucket::WriteChannel => "write_channel",
            Bucket::OtherGet => "other_get",
            Bucket::OtherTeamsCall => "other_teams_call",
            Bucket::PerTeam => "per_team",
            Bucket::PerChannel => "per_channel",
            Bucket::ChannelDaily => "channel_daily",
            Bucket::AddMember => "add_member",
            Bucket::Invitations => "invitations",
            Bucket::Directory => "directory",
            Bucket::Subscriptions => "subscriptions",
            Bucket::Files => "files",
        }
    }

    /// Whether the bucket exists once per team or channel rather than once per tenant.
    pub fn is_scoped(self) -> bool {
        matches!(
            self,
            Bucket::PerTeam | Bucket::PerChannel | Bucket::ChannelDaily
        )
    }

    /// Whether the pacer spaces requests in this bucket (the others are only counted).
    pub fn is_paced(self) -> bool {
        !matches!(self, Bucket::TeamsAny | Bucket::ChannelDaily)
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limits the pacer keeps under, and how tightly: the current "Microsoft Teams service
/// limits" table of Graph's throttling page (per app per tenant).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// GET team, GET channel, joinedTeams: 30 per s.
    pub get_team_or_channel: Limit,
    /// GET `/teams/{id}/members`, `/teams/{id}/channels`, channel members: 60 per s.
    pub get_members_or_channels: Limit,
    /// GET channel message: 20 per s.
    pub get_channel_message: Limit,
    /// POST channel message: 50 per s.
    pub post_channel_message: Limit,
    /// POST/PUT channel: 30 per s.
    pub write_channel: Limit,
    /// Other GET calls for Teams: 30 per s.
    pub other_get: Limit,
    /// Other Teams calls (members, message PATCH, softDelete, reactions): 30 per s.
    pub other_teams_call: Limit,
    /// One team or channel, any call: 4 per s.
    pub per_team_or_channel: Limit,
    /// Messages to one channel: 3,000 per app per day.
    pub channel_daily: Limit,
    /// Adding a team member: one per 2 s (Microsoft's advice).
    pub add_member: Limit,
    /// `/invitations`: 150 per 5 s.
    pub invitations: Limit,
    /// Directory reads: 3,000 per 10 s.
    pub directory: Limit,
    /// Subscriptions: 1,000 per 10 s.
    pub subscriptions: Limit,
    /// Drive calls (uploads, downloads): 30 per s, as other calls.
    pub files: Limit,
    /// Multiplies every limit (the sandbox's `time_scale`); `0` turns pacing off. The daily
    /// message budget is kept with a day of `86,400 s / scale` (a day at scale 1).
    pub scale: f64,
    /// The fraction of a bucket's capacity used as the client's burst (the rest absorbs
    /// timing jitter between client and server).
    pub burst_fraction: f64,
    /// The fraction of a bucket's sustained rate the client uses.
    pub rate_fraction: f64,
}

impl RateLimits {
    /// The documented limits (`PLATFORM_FACTS.md`, the current Teams service limits),
    /// unscaled.
    pub fn documented() -> Self {
        RateLimits {
            get_team_or_channel: Limit::per_second(30),
            get_members_or_channels: Limit::per_second(60),
            get_channel_message: Limit::per_second(20),
            post_channel_message: Limit::per_second(50),
            write_channel: Limit::per_second(30),
            other_get: Limit::per_second(30),
            other_teams_call: Limit::per_second(30),
            per_team_or_channel: Limit::per_second(4),
            channel_daily: Limit::new(3_000, Duration::from_secs(86_400)),
            add_member: Limit::new(1, Duration::from_secs(2)),
            invitations: Limit::new(150, Duration::from_secs(5)),
            directory: Limit::new(3_000, Duration::from_secs(10)),
            subscriptions: Limit::new(1_000, Duration::from_secs(10)),
            files: Limit::per_second(30),
            scale: 1.0,
            burst_fraction: 0.8,
            rate_fraction: 0.98,
        }
    }

    /// No pacing at all (the daily message budget is still counted).
    pub fn unlimited() -> Self {
        RateLimits {
            scale: 0.0,
            ..RateLimits::documented()
        }
    }

    /// These limits multiplied by `k` (a sandbox started with `time_scale = k`); `0` turns
    /// pacing off. Negative or non-finite factors are treated as `0`.
    pub fn scaled(mut self, k: f64) -> Self {
        self.scale = if k.is_finite() && k > 0.0 { k } else { 0.0 };
        self
    }

    /// Whether pacing is on.
    pub fn enabled(&self) -> bool {
        self.scale > 0.0
    }

    /// The limit of a bucket, unscaled; `None` for a bucket that is only counted
    /// ([`Bucket::TeamsAny`]).
    pub fn limit(&self, bucket: Bucket) -> Option<Limit> {
        Some(match bucket {
            Bucket::TeamsAny => return None,
            Bucket::GetTeamOrChannel => self.get_team_or_channel,
            Bucket::GetMembersOrChannels => self.get_members_or_channels,
            Bucket::GetChannelMessage => self.get_channel_message,
            Bucket::PostChannelMessage => self.post_channel_message,
            Bucket::WriteChannel => self.write_channel,
            Bucket::OtherGet => self.other_get,
            Bucket::OtherTeamsCall => self.other_teams_call,
            Bucket::PerTeam | Bucket::PerChannel => self.per_team_or_channel,
            Bucket::ChannelDaily => self.channel_daily,
            Bucket::AddMember => self.add_member,
            Bucket::Invitations => self.invitations,
            Bucket::Directory => self.directory,
            Bucket::Subscriptions => self.subscriptions,
            Bucket::Files => self.files,
        })
    }

    /// The scaled capacity (burst) of a bucket as a server enforcing these limits sees it:
    /// `requests × scale`, at least 1 (infinite for a bucket without a limit).
    pub fn capacity(&self, bucket: Bucket) -> f64 {
        match self.limit(bucket) {
            Some(l) => (f64::from(l.requests) * self.scale).max(1.0),
            None => f64::INFINITY,
        }
    }

    /// The scaled sustained rate of a bucket in requests per second (infinite for a bucket
    /// without a limit).
    pub fn rate(&self, bucket: Bucket) -> f64 {
        match self.limit(bucket) {
            Some(l) => self.capacity(bucket) / l.per.as_secs_f64().max(1e-9),
            None => f64::INFINITY,
        }
    }

    /// The length of the daily message budget's day: 86,400 s divided by the scale.
    pub fn day(&self) -> Duration {
        let scale = if self.enabled() { self.scale } else { 1.0 };
        Duration::from_secs_f64(self.channel_daily.per.as_secs_f64() / scale)
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::documented()
    }
}

/// One bucket a request counts against, with its scope (team or channel id) when scoped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketKey {
    /// The bucket.
    pub bucket: Bucket,
    /// The team or channel id for scoped buckets.
    pub scope: Option<String>,
}

impl BucketKey {
    fn global(bucket: Bucket) -> Self {
        BucketKey {
            bucket,
            scope: None,
        }
    }
    fn scoped(bucket: Bucket, scope: &str) -> Self {
        BucketKey {
            bucket,
            scope: Some(scope.to_owned()),
        }
    }
}

/// The buckets a request counts against, from its method and its path relative to the Graph
/// version root (segments, already percent-decoded).
pub fn classify(method: &Method, segments: &[&str]) -> Vec<BucketKey> {
    use Bucket::*;
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let put = *method == Method::PUT;
    let patch = *method == Method::PATCH;
    let global = |b: &[Bucket]| b.iter().map(|b| BucketKey::global(*b)).collect::<Vec<_>>();
    match segments {
        ["invitations", ..] => global(&[Invitations]),
        ["subscriptions", ..] => global(&[Subscriptions]),
        ["me", "joinedTeams", ..] if get => global(&[TeamsAny, GetTeamOrChannel]),
        ["me", "joinedTeams", ..] => global(&[TeamsAny, OtherTeamsCall]),
        ["me", ..] | ["users", ..] | ["directoryObjects", ..] => global(&[Directory]),
        ["drives", ..] | ["shares", ..] => global(&[Files]),
        ["teams"] if get => global(&[TeamsAny, OtherGet]),
        ["teams"] => global(&[TeamsAny, OtherTeamsCall]),
        ["teams", team, rest @ ..] => {
            // "one team or channel, any call": a call on a channel counts against that
            // channel, any other call under the team against the team
            let mut keys = vec![BucketKey::global(TeamsAny)];
            match rest {
                ["channels", channel, ..] => keys.push(BucketKey::scoped(PerChannel, channel)),
                _ => keys.push(BucketKey::scoped(PerTeam, team)),
            }
            let op: &[Bucket] = match rest {
                [] if get => &[GetTeamOrChannel],
                ["members", ..] if get => &[GetMembersOrChannels],
                ["members", ..] if post => &[OtherTeamsCall, AddMember],
                ["channels"] if get => &[GetMembersOrChannels],
                ["channels"] if post || put => &[WriteChannel],
                ["channels", _] if get => &[GetTeamOrChannel],
                ["channels", _] if patch || put => &[WriteChannel],
                ["channels", _, "members", ..] if get => &[GetMembersOrChannels],
                ["channels", _, "messages", ..] if get => &[GetChannelMessage],
                ["channels", _, "messages"] | ["channels", _, "messages", _, "replies"] if post => {
                    &[PostChannelMessage]
                }
                _ if get => &[OtherGet],
                _ => &[OtherTeamsCall],
            };
            keys.extend(global(op));
            if op == [PostChannelMessage] {
                if let ["channels", channel, ..] = rest {
                    keys.push(BucketKey::scoped(ChannelDaily, channel));
                }
            }
            keys
        }
        _ => Vec::new(),
    }
}

#[derive(Debug)]
struct Cell {
    /// Theoretical arrival time, seconds since the pacer's epoch.
    tat: f64,
}

#[derive(Debug, Default)]
struct Counters {
    per_bucket: BTreeMap<Bucket, u64>,
    per_scope: HashMap<(Bucket, String), u64>,
    throttled: u64,
}

/// Calls per bucket so far; for reports and the import benchmark's rate-limit floor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Requests counted against each tenant-wide bucket (and the total of each scoped one).
    pub per_bucket: BTreeMap<Bucket, u64>,
    /// For scoped buckets: the most requests any single team or channel received.
    pub max_per_scope: BTreeMap<Bucket, u64>,
    /// 429/503 responses reported back to the pacer.
    pub throttled: u64,
}

impl PacerStats {
    /// The least time the counted requests could have taken under `limits`: for each
    /// bucket, the requests beyond its burst capacity divided by its sustained rate; the
    /// largest of those.
    pub fn floor(&self, limits: &RateLimits) -> Duration {
        if !limits.enabled() {
            return Duration::ZERO;
        }
        let mut worst = 0.0f64;
        for (bucket, n) in &self.per_bucket {
            if !bucket.is_paced() {
                continue;
            }
            let n = if bucket.is_scoped() {
                self.max_per_scope.get(bucket).copied().unwrap_or(0)
            } else {
                *n
            };
            let secs = ((n as f64) - limits.capacity(*bucket)).max(0.0) / limits.rate(*bucket);
            worst = worst.max(secs);
        }
        Duration::from_secs_f64(worst)
    }
}

/// The day's message budget of one channel ([`Pacer::daily_budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyBudget {
    /// Messages this app may still post into the channel today.
    pub remaining: u32,
    /// Messages posted into it today.
    pub used: u32,
    /// When the day's count starts over (zero when nothing was posted yet).
    pub resets_in: Duration,
}

/// Posts into one channel during the current day.
#[derive(Debug)]
struct DayCount {
    started: Instant,
    used: u32,
}

/// The pacer of one connection (share it between clients of the same app and tenant).
pub struct Pacer {
    limits: RateLimits,
    epoch: Instant,
    cells: Mutex<HashMap<BucketKey, Cell>>,
    counters: Mutex<Counters>,
    days: Mutex<HashMap<String, DayCount>>,
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacer")
            .field("limits", &self.limits)
            .field("buckets", &self.cells.lock().len())
            .finish()
    }
}

/// Above this many cells, idle ones are dropped (an idle cell is a full bucket).
const PRUNE_AT: usize = 20_000;

impl Pacer {
    /// A pacer for these limits.
    pub fn new(limits: RateLimits) -> Self {
        Pacer {
            limits,
            epoch: Instant::now(),
            cells: Mutex::new(HashMap::new()),
            counters: Mutex::new(Counters::default()),
            days: Mutex::new(HashMap::new()),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// The day's message budget of `channel` (a channel id): Graph accepts 3,000 messages
    /// per app per day into one channel; the relay reads this to hold back or summarise
    /// before the 3,001st is refused.
    pub fn daily_budget(&self, channel: &str) -> DailyBudget {
        let limit = self.limits.channel_daily.requests;
        let day = self.limits.day();
        let days = self.days.lock();
        match days.get(channel) {
            Some(d) if d.started.elapsed() < day => DailyBudget {
                remaining: limit.saturating_sub(d.used),
                used: d.used,
                resets_in: day.saturating_sub(d.started.elapsed()),
            },
            _ => DailyBudget {
                remaining: limit,
                used: 0,
                resets_in: Duration::ZERO,
            },
        }
    }

    /// Messages this app may still post into `channel` today ([`Pacer::daily_budget`]).
    pub fn daily_remaining(&self, channel: &str) -> u32 {
        self.daily_budget(channel).remaining
    }

    /// Counts one post into each channel of `keys`' daily buckets, or refuses (counting
    /// nothing) with the time until the day starts over when one is spent.
    fn take_daily(&self, keys: &[BucketKey]) -> Result<(), Duration> {
        let channels: Vec<&str> = keys
            .iter()
            .filter(|k| k.bucket == Bucket::ChannelDaily)
            .filter_map(|k| k.scope.as_deref())
            .collect();
        if channels.is_empty() {
            return Ok(());
        }
        let limit = self.limits.channel_daily.requests;
        let day = self.limits.day();
        let mut days = self.days.lock();
        for c in &channels {
            if let Some(d) = days.get(*c) {
                if d.started.elapsed() < day && d.used >= limit {
                    return Err(day.saturating_sub(d.started.elapsed()));
                }
            }
        }
        for c in channels {
            let d = days.entry(c.to_owned()).or_insert(DayCount {
                started: Instant::now(),
                used: 0,
            });
            if d.started.elapsed() >= day {
                d.started = Instant::now();
                d.used = 0;
            }
            d.used += 1;
        }
        Ok(())
    }

    /// (interval, tolerance) of a bucket in seconds.
    fn shape(&self, bucket: Bucket) -> (f64, f64) {
        let capacity = self.limits.capacity(bucket);
        let rate = self.limits.rate(bucket) * self.limits.rate_fraction.clamp(0.1, 1.0);
        let interval = 1.0 / rate;
        let burst = (capacity * self.limits.burst_fraction.clamp(0.0, 1.0))
            .floor()
            .max(1.0);
        (interval, interval * (burst - 1.0))
    }

    /// Reserves a slot in every bucket of `keys` and returns how long to wait for it, or
    /// `Err(wait)` without reserving anything when the wait would exceed `max_wait`.
    pub fn reserve(&self, keys: &[BucketKey], max_wait: Duration) -> Result<Duration, Duration> {
        {
            let mut c = self.counters.lock();
            for k in keys {
                *c.per_bucket.entry(k.bucket).or_default() += 1;
                if let Some(scope) = &k.scope {
                    *c.per_scope.entry((k.bucket, scope.clone())).or_default() += 1;
                }
            }
        }
        if !self.limits.enabled() || keys.is_empty() {
            self.take_daily(keys)?;
            return Ok(Duration::ZERO);
        }
        let now = self.now();
        let mut cells = self.cells.lock();
        if cells.len() > PRUNE_AT {
            cells.retain(|_, c| c.tat > now);
        }
        let paced: Vec<&BucketKey> = keys.iter().filter(|k| k.bucket.is_paced()).collect();
        let mut at = now;
        for k in &paced {
            let (_, tolerance) = self.shape(k.bucket);
            if let Some(c) = cells.get(k) {
                at = at.max(c.tat - tolerance);
            }
        }
        let wait = at - now;
        if wait > max_wait.as_secs_f64() {
            return Err(Duration::from_secs_f64(wait));
        }
        self.take_daily(keys)?;
        for k in paced {
            let (interval, _) = self.shape(k.bucket);
            let cell = cells.entry(k.clone()).or_insert(Cell { tat: now });
            cell.tat = cell.tat.max(at) + interval;
        }
        Ok(Duration::from_secs_f64(wait.max(0.0)))
    }

    /// Waits for a slot in every bucket of `keys`. `Err(wait)` when it would take longer
    /// than `max_wait` (nothing is reserved then).
    pub async fn acquire(&self, keys: &[BucketKey], max_wait: Duration) -> Result<(), Duration> {
        let wait = self.reserve(keys, max_wait)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// The server throttled a request counting against `keys`: nothing more goes to those
    /// buckets for `retry_after`.
    pub fn penalize(&self, keys: &[BucketKey], retry_after: Duration) {
        self.counters.lock().throttled += 1;
        if !self.limits.enabled() {
            return;
        }
        let now = self.now();
        let mut cells = self.cells.lock();
        for k in keys.iter().filter(|k| k.bucket.is_paced()) {
            let (_, tolerance) = self.shape(k.bucket);
            let cell = cells.entry(k.clone()).or_insert(Cell { tat: now });
            cell.tat = cell.tat.max(now + retry_after.as_secs_f64() + tolerance);
        }
    }

    /// Requests counted so far.
    pub fn stats(&self) -> PacerStats {
        let c = self.counters.lock();
        let mut max_per_scope = BTreeMap::new();
        for ((bucket, _), n) in &c.per_scope {
            let e = max_per_scope.entry(*bucket).or_insert(0);
            *e = (*e).max(*n);
        }
        PacerStats {
            per_bucket: c.per_bucket.clone(),
            max_per_scope,
            throttled: c.throttled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(method: Method, path: &str) -> Vec<(Bucket, Option<String>)> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        classify(&method, &segs)
            .into_iter()
            .map(|k| (k.bucket, k.scope))
            .collect()
    }

    #[test]
    fn requests_are_classified_like_the_throttling_table() {
        use Bucket::*;
        assert_eq!(
            buckets(Method::GET, "teams"),
            vec![(TeamsAny, None), (OtherGet, None)]
        );
        assert_eq!(
            buckets(Method::GET, "me/joinedTeams"),
            vec![(TeamsAny, None), (GetTeamOrChannel, None)]
        );
        assert_eq!(
            buckets(Method::GET, "teams/T1/channels"),
            vec![
                (TeamsAny, None),
                (PerTeam, Some("T1".into())),
                (GetMembersOrChannels, None)
            ]
        );
        assert_eq!(
            buckets(Method::GET, "teams/T1/members"),
            vec![
                (TeamsAny, None),
                (PerTeam, Some("T1".into())),
                (GetMembersOrChannels, None)
            ]
        );
        assert_eq!(
            buckets(Method::GET, "teams/T1/channels/C1/members"),
            vec![
                (TeamsAny, None),
                (PerChannel, Some("C1".into())),
                (GetMembersOrChannels, None)
            ]
        );
        assert_eq!(
            buckets(Method::GET, "teams/T1"),
            vec![
                (TeamsAny, None),
                (PerTeam, Some("T1".into())),
                (GetTeamOrChannel, None)
            ]
        );
        assert_eq!(
            buckets(Method::GET, "teams/T1/channels/C1"),
            vec![
                (TeamsAny, None),
                (PerChannel, Some("C1".into())),
                (GetTeamOrChannel, None)
            ]
        );
        assert_eq!(
            buckets(Method::GET, "teams/T1/channels/C1/filesFolder"),
            vec![
                (TeamsAny, None),
                (PerChannel, Some("C1".into())),
                (OtherGet, None)
            ]
        );
        assert_eq!(
            buckets(Method::POST, "teams/T1/channels/C1/messages/M1/replies"),
            vec![
                (TeamsAny, None),
                (PerChannel, Some("C1".into())),
                (PostChannelMessage, None),
                (ChannelDaily, Some("C1".into()))
            ]
        );
        assert_eq!(
            buckets(Method::GET, "teams/T1/channels/C1/messages/delta"),
            vec![
                (TeamsAny, None),
                (PerChannel, Some("C1".into())),
                (GetChannelMessage, None)
            ]
        );
        // softDelete and PATCH of a message are not "POST channel message"
        assert!(
            !buckets(Method::POST, "teams/T1/channels/C1/messages/M1/softDelete")
                .iter()
                .any(|(b, _)| *b == PostChannelMessage)
        );
        assert_eq!(
            buckets(Method::POST, "teams/T1/members"),
            vec![
                (TeamsAny, None),
                (PerTeam, Some("T1".into())),
                (OtherTeamsCall, None),
                (AddMember, None)
            ]
        );
        assert!(
            buckets(Method::PATCH, "teams/T1/channels/C1/messages/M1")
                .contains(&(OtherTeamsCall, None))
        );
        assert_eq!(buckets(Method::GET, "users"), vec![(Directory, None)]);
        assert_eq!(
            buckets(Method::GET, "me/transitiveMemberOf"),
            vec![(Directory, None)]
        );
        assert_eq!(
            buckets(Method::PATCH, "subscriptions/s1"),
            vec![(Subscriptions, None)]
        );
        assert_eq!(
            buckets(Method::PUT, "drives/d1/items/f1:/a.txt:/content"),
            vec![(Files, None)]
        );
        assert_eq!(buckets(Method::GET, "sites/x"), vec![]);
        assert_eq!(
            buckets(Method::POST, "invitations"),
            vec![(Invitations, None)]
        );
    }

    #[test]
    fn the_table_is_the_current_one() {
        let l = RateLimits::documented();
        let per_s = |b| {
            l.limit(b)
                .map(|x: Limit| f64::from(x.requests) / x.per.as_secs_f64())
        };
        assert_eq!(per_s(Bucket::PerChannel), Some(4.0));
        assert_eq!(per_s(Bucket::PerTeam), Some(4.0));
        assert_eq!(per_s(Bucket::PostChannelMessage), Some(50.0));
        assert_eq!(per_s(Bucket::GetChannelMessage), Some(20.0));
        assert_eq!(per_s(Bucket::GetTeamOrChannel), Some(30.0));
        assert_eq!(per_s(Bucket::GetMembersOrChannels), Some(60.0));
        assert_eq!(per_s(Bucket::OtherGet), Some(30.0));
        assert_eq!(per_s(Bucket::OtherTeamsCall), Some(30.0));
        // no tenant-wide "any call" row any more: counted, never paced
        assert_eq!(l.limit(Bucket::TeamsAny), None);
        assert_eq!(
            l.channel_daily,
            Limit::new(3_000, Duration::from_secs(86_400))
        );
    }

    #[test]
    fn the_daily_budget_of_a_channel_is_counted_and_enforced() {
        let p = Pacer::new(RateLimits::unlimited());
        let post = |c: &str| {
            vec![
                BucketKey::global(Bucket::PostChannelMessage),
                BucketKey::scoped(Bucket::ChannelDaily, c),
            ]
        };
        assert_eq!(p.daily_remaining("C1"), 3_000);
        for _ in 0..2_999 {
            p.reserve(&post("C1"), Duration::ZERO).unwrap();
        }
        let b = p.daily_budget("C1");
        assert_eq!((b.remaining, b.used), (1, 2_999));
        assert!(b.resets_in > Duration::from_secs(86_000), "{b:?}");
        p.reserve(&post("C1"), Duration::ZERO).unwrap();
        assert_eq!(p.daily_remaining("C1"), 0);
        // the 3,001st is refused until the day starts over, and counts nothing
        let wait = p.reserve(&post("C1"), Duration::from_secs(60)).unwrap_err();
        assert!(wait > Duration::from_secs(86_000), "{wait:?}");
        assert_eq!(p.daily_budget("C1").used, 3_000);
        // another channel has its own budget; other calls are not counted against it
        p.reserve(&post("C2"), Duration::ZERO).unwrap();
        p.reserve(
            &[BucketKey::scoped(Bucket::PerChannel, "C2")],
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(p.daily_remaining("C2"), 2_999);
    }

    #[test]
    fn a_scaled_day_is_shorter() {
        let l = RateLimits::documented().scaled(1_000.0);
        assert!((l.day().as_secs_f64() - 86.4).abs() < 1e-9);
        assert_eq!(RateLimits::unlimited().day(), Duration::from_secs(86_400));
    }

    #[test]
    fn gcra_allows_the_burst_then_spaces_requests() {
        let limits = RateLimits {
            burst_fraction: 1.0,
            rate_fraction: 1.0,
            ..RateLimits::documented()
        };
        let p = Pacer::new(limits);
        let key = [BucketKey::scoped(Bucket::PerChannel, "C1")]; // 4 per s
        let max = Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(p.reserve(&key, max).unwrap(), Duration::ZERO);
        }
        let w5 = p.reserve(&key, max).unwrap();
        assert!(
            w5 > Duration::from_millis(200) && w5 <= Duration::from_millis(250),
            "{w5:?}"
        );
        let w6 = p.reserve(&key, max).unwrap();
        assert!(
            w6 > Duration::from_millis(450) && w6 <= Duration::from_millis(500),
            "{w6:?}"
        );
        // refused when the wait is over the bound, and nothing is reserved
        let refused = p.reserve(&key, Duration::from_millis(100)).unwrap_err();
        assert!(refused > Duration::from_millis(700));
        let w7 = p.reserve(&key, max).unwrap();
        assert!(
            w7 > Duration::from_millis(700) && w7 <= Duration::from_millis(750),
            "{w7:?}"
        );
    }

    #[test]
    fn a_request_waits_for_its_slowest_bucket_and_counts_everywhere() {
        let p = Pacer::new(RateLimits {
            burst_fraction: 1.0,
            rate_fraction: 1.0,
            ..RateLimits::documented()
        });
        let max = Duration::from_secs(60);
        let team = BucketKey::scoped(Bucket::PerTeam, "T1");
        let any = BucketKey::global(Bucket::GetMembersOrChannels);
        for _ in 0..4 {
            assert_eq!(
                p.reserve(&[any.clone(), team.clone()], max).unwrap(),
                Duration::ZERO
            );
        }
        let w = p.reserve(&[any.clone(), team.clone()], max).unwrap();
        assert!(w > Duration::from_millis(200), "{w:?}");
        // another team is not held back
        let other = BucketKey::scoped(Bucket::PerTeam, "T2");
        assert_eq!(p.reserve(&[any, other], max).unwrap(), Duration::ZERO);
        let s = p.stats();
        assert_eq!(s.per_bucket[&Bucket::GetMembersOrChannels], 6);
        assert_eq!(s.per_bucket[&Bucket::PerTeam], 6);
        assert_eq!(s.max_per_scope[&Bucket::PerTeam], 5);
    }

    #[test]
    fn penalize_holds_the_bucket_back() {
        let p = Pacer::new(RateLimits::documented());
        let key = [BucketKey::global(Bucket::GetMembersOrChannels)];
        p.penalize(&key, Duration::from_secs(3));
        let w = p.reserve(&key, Duration::from_secs(60)).unwrap();
        assert!(w >= Duration::from_millis(2900), "{w:?}");
        assert_eq!(p.stats().throttled, 1);
    }

    #[test]
    fn disabled_pacer_never_waits_but_still_counts() {
        let p = Pacer::new(RateLimits::unlimited());
        let key = [BucketKey::global(Bucket::PostChannelMessage)];
        for _ in 0..100 {
            assert_eq!(p.reserve(&key, Duration::ZERO).unwrap(), Duration::ZERO);
        }
        assert_eq!(p.stats().per_bucket[&Bucket::PostChannelMessage], 100);
        assert_eq!(p.stats().floor(p.limits()), Duration::ZERO);
    }

    #[test]
    fn floor_counts_requests_beyond_the_burst() {
        let limits = RateLimits::documented().scaled(2.0);
        let mut s = PacerStats::default();
        // 1,120 GETs at 120/s with a burst of 120: (1120 - 120) / 120 s
        s.per_bucket.insert(Bucket::GetMembersOrChannels, 1_120);
        s.per_bucket.insert(Bucket::PerTeam, 2_000);
        s.max_per_scope.insert(Bucket::PerTeam, 2);
        // counted-only buckets do not set a floor
        s.per_bucket.insert(Bucket::TeamsAny, 1_000_000);
        let f = s.floor(&limits);
        assert!((f.as_secs_f64() - 1000.0 / 120.0).abs() < 1e-6, "{f:?}");
        assert_eq!(RateLimits::documented().scaled(-1.0).scale, 0.0);
        assert_eq!(RateLimits::documented().scaled(f64::NAN).scale, 0.0);
    }
}
