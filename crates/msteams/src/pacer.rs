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
    /// Any Teams Graph call (per app per tenant).
    TeamsAny,
    /// GET of team or channel collections and items (`/teams/{id}/channels`, `/members`).
    GetTeamChannel,
    /// GET `/teams/{id}` and `/me/joinedTeams`.
    GetTeamOrJoined,
    /// GET of channel messages (list, item, replies, delta).
    GetChannelMessage,
    /// POST of a channel message or reply.
    PostChannelMessage,
    /// POST or PATCH of a channel.
    WriteChannel,
    /// Other Teams writes: member add/remove, message PATCH, softDelete, reactions.
    OtherTeamsWrite,
    /// Any call on one team (scoped by team id).
    PerTeam,
    /// Any call on one channel (scoped by channel id).
    PerChannel,
    /// Messages posted to one channel per day (scoped by channel id).
    ChannelDaily,
    /// Adding a member to a team (Microsoft advises spacing these).
    AddMember,
    /// `/invitations` (per tenant for all apps).
    Invitations,
    /// Directory reads (`/me`, `/users`, `/me/transitiveMemberOf`).
    Directory,
    /// `/subscriptions`.
    Subscriptions,
}

impl Bucket {
    /// A stable name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::TeamsAny => "teams_any",
            Bucket::GetTeamChannel => "get_team_channel",
            Bucket::GetTeamOrJoined => "get_team_or_joined",
            Bucket::GetChannelMessage => "get_channel_message",
            Bucket::PostChannelMessage => "post_channel_message",
            Bucket::WriteChannel => "write_channel",
            Bucket::OtherTeamsWrite => "other_teams_write",
            Bucket::PerTeam => "per_team",
            Bucket::PerChannel => "per_channel",
            Bucket::ChannelDaily => "channel_daily",
            Bucket::AddMember => "add_member",
            Bucket::Invitations => "invitations",
            Bucket::Directory => "directory",
            Bucket::Subscriptions => "subscriptions",
        }
    }

    /// Whether the bucket exists once per team or channel rather than once per tenant.
    pub fn is_scoped(self) -> bool {
        matches!(
            self,
            Bucket::PerTeam | Bucket::PerChannel | Bucket::ChannelDaily
        )
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limits the pacer keeps under, and how tightly.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// Any Teams Graph call: 15,000 per 10 s.
    pub teams_any: Limit,
    /// GET team / channel: 60 per s.
    pub get_team_channel: Limit,
    /// GET `/teams/{id}`, joinedTeams: 30 per s.
    pub get_team_or_joined: Limit,
    /// GET channel message: 5 per s.
    pub get_channel_message: Limit,
    /// POST channel message: 2 per s.
    pub post_channel_message: Limit,
    /// POST/PATCH channel: 30 per s.
    pub write_channel: Limit,
    /// Other Teams writes (members, message PATCH, softDelete, reactions): 30 per s.
    pub other_teams_write: Limit,
    /// One team or channel, any call: 4 per s.
    pub per_team_or_channel: Limit,
    /// Messages to one channel: 3,000 per day.
    pub channel_daily: Limit,
    /// Adding a team member: one per 2 s (Microsoft's advice).
    pub add_member: Limit,
    /// `/invitations`: 150 per 5 s.
    pub invitations: Limit,
    /// Directory reads: 3,000 per 10 s.
    pub directory: Limit,
    /// Subscriptions: 1,000 per 10 s.
    pub subscriptions: Limit,
    /// Multiplies every limit (the sandbox's `time_scale`); `0` turns pacing off.
    pub scale: f64,
    /// The fraction of a bucket's capacity used as the client's burst (the rest absorbs
    /// timing jitter between client and server).
    pub burst_fraction: f64,
    /// The fraction of a bucket's sustained rate the client uses.
    pub rate_fraction: f64,
}

impl RateLimits {
    /// The documented limits (`PLATFORM_FACTS.md`), unscaled.
    pub fn documented() -> Self {
        RateLimits {
            teams_any: Limit::new(15_000, Duration::from_secs(10)),
            get_team_channel: Limit::per_second(60),
            get_team_or_joined: Limit::per_second(30),
            get_channel_message: Limit::per_second(5),
            post_channel_message: Limit::per_second(2),
            write_channel: Limit::per_second(30),
            other_teams_write: Limit::per_second(30),
            per_team_or_channel: Limit::per_second(4),
            channel_daily: Limit::new(3_000, Duration::from_secs(86_400)),
            add_member: Limit::new(1, Duration::from_secs(2)),
            invitations: Limit::new(150, Duration::from_secs(5)),
            directory: Limit::new(3_000, Duration::from_secs(10)),
            subscriptions: Limit::new(1_000, Duration::from_secs(10)),
            scale: 1.0,
            burst_fraction: 0.8,
            rate_fraction: 0.98,
        }
    }

    /// No pacing at all.
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

    /// The limit of a bucket, unscaled.
    pub fn limit(&self, bucket: Bucket) -> Limit {
        match bucket {
            Bucket::TeamsAny => self.teams_any,
            Bucket::GetTeamChannel => self.get_team_channel,
            Bucket::GetTeamOrJoined => self.get_team_or_joined,
            Bucket::GetChannelMessage => self.get_channel_message,
            Bucket::PostChannelMessage => self.post_channel_message,
            Bucket::WriteChannel => self.write_channel,
            Bucket::OtherTeamsWrite => self.other_teams_write,
            Bucket::PerTeam | Bucket::PerChannel => self.per_team_or_channel,
            Bucket::ChannelDaily => self.channel_daily,
            Bucket::AddMember => self.add_member,
            Bucket::Invitations => self.invitations,
            Bucket::Directory => self.directory,
            Bucket::Subscriptions => self.subscriptions,
        }
    }

    /// The scaled capacity (burst) of a bucket as a server enforcing these limits sees it:
    /// `requests × scale`, at least 1.
    pub fn capacity(&self, bucket: Bucket) -> f64 {
        (f64::from(self.limit(bucket).requests) * self.scale).max(1.0)
    }

    /// The scaled sustained rate of a bucket in requests per second.
    pub fn rate(&self, bucket: Bucket) -> f64 {
        self.capacity(bucket) / self.limit(bucket).per.as_secs_f64().max(1e-9)
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
    let patch = *method == Method::PATCH;
    let global = |b: &[Bucket]| b.iter().map(|b| BucketKey::global(*b)).collect::<Vec<_>>();
    match segments {
        ["invitations", ..] => global(&[Invitations]),
        ["subscriptions", ..] => global(&[Subscriptions]),
        ["me", "joinedTeams", ..] if get => global(&[TeamsAny, GetTeamOrJoined]),
        ["me", "joinedTeams", ..] => global(&[TeamsAny]),
        ["me", ..] | ["users", ..] | ["directoryObjects", ..] => global(&[Directory]),
        ["teams"] if get => global(&[TeamsAny, GetTeamChannel]),
        ["teams"] => global(&[TeamsAny]),
        ["teams", team, rest @ ..] => {
            // "one team or channel, any call": a call on a channel counts against that
            // channel, any other call under the team against the team
            let mut keys = vec![BucketKey::global(TeamsAny)];
            match rest {
                ["channels", channel, ..] => keys.push(BucketKey::scoped(PerChannel, channel)),
                _ => keys.push(BucketKey::scoped(PerTeam, team)),
            }
            let op: &[Bucket] = match rest {
                [] if get => &[GetTeamOrJoined],
                ["members", ..] if get => &[GetTeamChannel],
                ["members", ..] if post => &[OtherTeamsWrite, AddMember],
                ["members", ..] => &[OtherTeamsWrite],
                ["channels"] if get => &[GetTeamChannel],
                ["channels"] if post => &[WriteChannel],
                ["channels", _] if get => &[GetTeamChannel],
                ["channels", _] if patch => &[WriteChannel],
                ["channels", _, "messages", ..] if get => &[GetChannelMessage],
                ["channels", _, "messages"] | ["channels", _, "messages", _, "replies"] if post => {
                    &[PostChannelMessage]
                }
                ["channels", _, "messages", ..] => &[OtherTeamsWrite],
                ["channels", _, ..] if get => &[GetTeamChannel],
                _ => &[],
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

/// The pacer of one connection (share it between clients of the same app and tenant).
pub struct Pacer {
    limits: RateLimits,
    epoch: Instant,
    cells: Mutex<HashMap<BucketKey, Cell>>,
    counters: Mutex<Counters>,
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
        }
    }

    /// The limits.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
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
            return Ok(Duration::ZERO);
        }
        let now = self.now();
        let mut cells = self.cells.lock();
        if cells.len() > PRUNE_AT {
            cells.retain(|_, c| c.tat > now);
        }
        let mut at = now;
        for k in keys {
            let (_, tolerance) = self.shape(k.bucket);
            if let Some(c) = cells.get(k) {
                at = at.max(c.tat - tolerance);
            }
        }
        let wait = at - now;
        if wait > max_wait.as_secs_f64() {
            return Err(Duration::from_secs_f64(wait));
        }
        for k in keys {
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
        for k in keys {
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
            vec![(TeamsAny, None), (GetTeamChannel, None)]
        );
        assert_eq!(
            buckets(Method::GET, "me/joinedTeams"),
            vec![(TeamsAny, None), (GetTeamOrJoined, None)]
        );
        assert_eq!(
            buckets(Method::GET, "teams/T1/channels"),
            vec![
                (TeamsAny, None),
                (PerTeam, Some("T1".into())),
                (GetTeamChannel, None)
            ]
        );
        assert_eq!(
            buckets(Method::GET, "teams/T1"),
            vec![
                (TeamsAny, None),
                (PerTeam, Some("T1".into())),
                (GetTeamOrJoined, None)
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
                (OtherTeamsWrite, None),
                (AddMember, None)
            ]
        );
        assert!(
            buckets(Method::PATCH, "teams/T1/channels/C1/messages/M1")
                .contains(&(OtherTeamsWrite, None))
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
        assert_eq!(buckets(Method::GET, "sites/x"), vec![]);
        assert_eq!(
            buckets(Method::POST, "invitations"),
            vec![(Invitations, None)]
        );
    }

    #[test]
    fn gcra_allows_the_burst_then_spaces_requests() {
        let limits = RateLimits {
            burst_fraction: 1.0,
            rate_fraction: 1.0,
            ..RateLimits::documented()
        };
        let p = Pacer::new(limits);
        let key = [BucketKey::global(Bucket::PostChannelMessage)]; // 2 per s
        let max = Duration::from_secs(60);
        assert_eq!(p.reserve(&key, max).unwrap(), Duration::ZERO);
        assert_eq!(p.reserve(&key, max).unwrap(), Duration::ZERO);
        let w3 = p.reserve(&key, max).unwrap();
        assert!(
            w3 > Duration::from_millis(400) && w3 <= Duration::from_millis(500),
            "{w3:?}"
        );
        let w4 = p.reserve(&key, max).unwrap();
        assert!(
            w4 > Duration::from_millis(900) && w4 <= Duration::from_millis(1000),
            "{w4:?}"
        );
        // refused when the wait is over the bound, and nothing is reserved
        let refused = p.reserve(&key, Duration::from_millis(100)).unwrap_err();
        assert!(refused > Duration::from_millis(1400));
        let w5 = p.reserve(&key, max).unwrap();
        assert!(
            w5 > Duration::from_millis(1400) && w5 <= Duration::from_millis(1500),
            "{w5:?}"
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
        let any = BucketKey::global(Bucket::TeamsAny);
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
        assert_eq!(s.per_bucket[&Bucket::TeamsAny], 6);
        assert_eq!(s.per_bucket[&Bucket::PerTeam], 6);
        assert_eq!(s.max_per_scope[&Bucket::PerTeam], 5);
    }

    #[test]
    fn penalize_holds_the_bucket_back() {
        let p = Pacer::new(RateLimits::documented());
        let key = [BucketKey::global(Bucket::GetTeamChannel)];
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
        s.per_bucket.insert(Bucket::GetTeamChannel, 1_120);
        s.per_bucket.insert(Bucket::PerTeam, 2_000);
        s.max_per_scope.insert(Bucket::PerTeam, 2);
        let f = s.floor(&limits);
        assert!((f.as_secs_f64() - 1000.0 / 120.0).abs() < 1e-6, "{f:?}");
        assert_eq!(RateLimits::documented().scaled(-1.0).scale, 0.0);
        assert_eq!(RateLimits::documented().scaled(f64::NAN).scale, 0.0);
    }
}
