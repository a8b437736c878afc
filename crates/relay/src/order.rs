//! Origin order per channel.
//!
//! Slack does not deliver events in order (neither over HTTP nor Socket Mode): two messages
//! posted a few milliseconds apart may arrive the other way round. The relay orders a
//! channel's events by the time the platform stamped on them
//! ([`occurred_at`](switchboard_core::PlatformEvent::occurred_at), exact to the microsecond
//! of a Slack `ts`), in two steps:
//!
//! - **Within a lease**: the events of one channel leased together are translated oldest
//!   first, whatever order they arrived in.
//! - **Across leases, once disorder is seen**: when an event arrives older than one already
//!   relayed for its channel (it came late), the relay learns a *hold-back window* for that
//!   connection: twice the lateness, at least [`MIN_WINDOW`], at most the configured cap.
//!   From then on an event of the connection is relayed once it has been in the inbox for
//!   the window, together with every event of its channel older than it (those are the late
//!   ones the window waited for). Until then it is given back to the inbox, and later events
//!   of its channel wait behind it. A connection whose events keep arriving in order has no
//!   window and adds no latency; a window is forgotten after [`WINDOW_MEMORY`] without
//!   disorder. The wait is per event from its arrival, so a held-back stream still flows
//!   at full rate, one window behind.
//!
//! Only events that were relayed teach a window (a redelivery of something already relayed
//! does not), and lateness beyond the cap is not learned from: that is a retry or a replay
//! (Slack retries a failed delivery after a minute; a catch-up replays hours), which no
//! window could reorder.
//!
//! [`Reorder`] is the bookkeeping only (no I/O): the engine asks it for a [`Plan`] of each
//! lease and tells it what it translated; it gives the deferred items back to the inbox with
//! [`QueueStore::inbox_defer`](switchboard_core::QueueStore::inbox_defer).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use switchboard_core::{ChannelRef, ConnectionId, Inbound, InboxId, InboxItem, OrgId};
use time::OffsetDateTime;

/// The smallest hold-back window learned once a connection's events were seen out of order.
pub const MIN_WINDOW: Duration = Duration::from_millis(250);
/// How long a learned window is kept without another disorder.
pub const WINDOW_MEMORY: Duration = Duration::from_secs(600);
/// Given-back events come back this much after the first of them is due, so a steady stream
/// is released a few at a time rather than one lease per event.
pub const RELEASE_GRAIN: Duration = Duration::from_millis(20);

/// What to do with one lease.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Indices into the lease, in the order to translate them.
    pub translate: Vec<usize>,
    /// Items to give back, with how long each group waits.
    pub defer: Vec<(Duration, Vec<InboxId>)>,
}

#[derive(Debug)]
struct Learned {
    window: Duration,
    seen: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// The newest event translated per channel.
    newest: HashMap<(OrgId, ChannelRef), OffsetDateTime>,
    /// Hold-back windows per connection.
    windows: HashMap<(OrgId, ConnectionId), Learned>,
    /// When the earliest item given back becomes due.
    due: Option<Instant>,
}

/// What the relay learned about the order its connections deliver in.
#[derive(Debug)]
pub struct Reorder {
    max: Duration,
    state: Mutex<State>,
}

fn event_time(item: &InboxItem) -> Option<OffsetDateTime> {
    match &item.item {
        Inbound::Event(e) => Some(e.occurred_at),
        Inbound::Changed(_) | Inbound::Signal(_) => None,
    }
}

impl Reorder {
    /// Windows learned are capped at `max`; `Duration::ZERO` disables holding back (events
    /// of one lease are still ordered).
    pub fn new(max: Duration) -> Self {
        Reorder {
            max,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The hold-back window of `connection` now, if it has one.
    pub fn window(&self, org: &OrgId, connection: &ConnectionId) -> Option<Duration> {
        let mut st = self.lock();
        Self::window_in(&mut st, org, connection, Instant::now())
    }

    fn window_in(
        st: &mut State,
        org: &OrgId,
        connection: &ConnectionId,
        now: Instant,
    ) -> Option<Duration> {
        let key = (org.clone(), connection.clone());
        match st.windows.get(&key) {
            Some(l) if now.duration_since(l.seen) < WINDOW_MEMORY => Some(l.window),
            Some(_) => {
                st.windows.remove(&key);
                None
            }
            None => None,
        }
    }

    /// The plan for `items` (one lease, oldest first): each channel's events oldest first by
    /// the platform's time, other items (change hints, signals) where they were; on a
    /// connection with a window, the events of a channel newer than its newest one that has
    /// waited the window are given back (with the hints behind them), until the first of
    /// them will have waited it.
    pub fn plan(&self, items: &[InboxItem]) -> Plan {
        let now = Instant::now();
        let wall = OffsetDateTime::now_utc();
        let mut st = self.lock();
        // Channels in order of first appearance, each with its items' indices.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<(&OrgId, &ChannelRef), usize> = HashMap::new();
        let mut slot: Vec<Option<usize>> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.item.channel() {
                Some(ch) => {
                    let g = *group_of.entry((&item.org, ch)).or_insert_with(|| {
                        groups.push(Vec::new());
                        groups.len() - 1
                    });
                    groups[g].push(i);
                    slot.push(Some(g));
                }
                None => slot.push(None),
            }
        }
        let mut plan = Plan::default();
        let mut keep: Vec<VecDeque<usize>> = Vec::with_capacity(groups.len());
        for group in &groups {
            // The events sorted among themselves, into the positions events held.
            let mut events: Vec<usize> = group
                .iter()
                .copied()
                .filter(|&i| event_time(&items[i]).is_some())
                .collect();
            events.sort_by_key(|&i| event_time(&items[i]));
            let mut sorted = events.into_iter();
            let ordered: Vec<usize> = group
                .iter()
                .map(|&i| {
                    if event_time(&items[i]).is_some() {
                        sorted.next().unwrap_or(i)
                    } else {
                        i
                    }
                })
                .collect();
            let first = &items[ordered[0]];
            let window = if self.max.is_zero() {
                None
            } else {
                Self::window_in(&mut st, &first.org, &first.connection, now)
            };
            let mut cut = ordered.len();
            if let Some(w) = window {
                let waited =
                    |i: usize| event_time(&items[i]).is_none() || items[i].received_at + w <= wall;
                cut = ordered
                    .iter()
                    .rposition(|&i| waited(i))
                    .map_or(0, |p| p + 1);
                if cut < ordered.len() {
                    let rest = &ordered[cut..];
                    let first_due = rest
                        .iter()
                        .map(|&i| items[i].received_at + w)
                        .min()
                        .unwrap_or(wall);
                    let wait =
                        Duration::try_from(first_due - wall).unwrap_or_default() + RELEASE_GRAIN;
                    let ids = rest.iter().map(|&i| items[i].id);
                    match plan.defer.iter_mut().find(|(d, _)| *d == wait) {
                        Some((_, v)) => v.extend(ids),
                        None => plan.defer.push((wait, ids.collect())),
                    }
                }
            }
            keep.push(ordered[..cut].iter().copied().collect());
        }
        for (i, s) in slot.iter().enumerate() {
            match s {
                None => plan.translate.push(i),
                Some(g) => {
                    if let Some(next) = keep[*g].pop_front() {
                        plan.translate.push(next);
                    }
                }
            }
        }
        plan
    }

    /// `item` was translated (`relayed`: it meant deliveries, it was not a redelivery of
    /// something already relayed): its channel's newest time moves on, and if it was
    /// relayed late (older than an event already translated there, by no more than the cap)
    /// its connection's window grows to cover it.
    pub fn translated(&self, item: &InboxItem, relayed: bool) {
        let (Inbound::Event(e), Some(ch)) = (&item.item, item.item.channel()) else {
            return;
        };
        let mut st = self.lock();
        let key = (item.org.clone(), ch.clone());
        let newest = st.newest.get(&key).copied();
        match newest {
            Some(n) if e.occurred_at < n => {
                let late = Duration::try_from(n - e.occurred_at).unwrap_or_default();
                if relayed && !self.max.is_zero() && late <= self.max {
                    let window = (late * 2).max(MIN_WINDOW).min(self.max);
                    let now = Instant::now();
                    let learned = st
                        .windows
                        .entry((item.org.clone(), item.connection.clone()))
                        .or_insert(Learned {
                            window: Duration::ZERO,
                            seen: now,
                        });
                    learned.seen = now;
                    if window > learned.window {
                        learned.window = window;
                        tracing::info!(
                            connection = %item.connection, channel = %ch,
                            late_ms = late.as_millis(), window_ms = window.as_millis(),
                            "an event arrived out of order; this connection's events now wait for late ones"
                        );
                    }
                }
            }
            _ => {
                st.newest.insert(key, e.occurred_at);
            }
        }
    }

    /// Items of a plan were given back to the inbox until `due` (taken once the store
    /// answered, so never before the store's own time).
    pub fn deferred_until(&self, due: Instant) {
        let mut st = self.lock();
        st.due = Some(
            st.due
                .filter(|d| *d > Instant::now())
                .map_or(due, |d| d.min(due)),
        );
    }

    /// When the earliest item given back becomes due, if one is still waiting: a worker
    /// that would otherwise sleep longer wakes then.
    pub fn next_due(&self) -> Option<Instant> {
        let mut st = self.lock();
        match st.due {
            Some(d) if d > Instant::now() => Some(d),
            _ => {
                st.due = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{
        ConnectionSignal, EventKind, MessageId, PlatformEvent, PlatformKind, PortableMessage,
        RichText, Sender, UserId,
    };

    fn org() -> OrgId {
        OrgId::new("org").unwrap()
    }

    fn conn() -> ConnectionId {
        ConnectionId::new("c1").unwrap()
    }

    fn at(ms: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
            + time::Duration::milliseconds(ms)
    }

    fn posted(id: i64, channel: &str, ms: i64) -> InboxItem {
        InboxItem {
            id: InboxId(id),
            org: org(),
            connection: conn(),
            item: Inbound::Event(PlatformEvent {
                event_id: format!("Ev{id}"),
                channel: channel.parse().unwrap(),
                occurred_at: at(ms),
                kind: EventKind::Posted {
                    message: MessageId::new(format!("m{id}")).unwrap(),
                    content: PortableMessage {
                        sender: Sender {
                            platform: PlatformKind::Slack,
                            user: UserId::new("U1").unwrap(),
                            display_name: "Ann".into(),
                            avatar_url: None,
                            email: None,
                        },
                        text: RichText::plain("x"),
                        attachments: vec![],
                        thread_root: None,
                    },
                },
            }),
            received_at: OffsetDateTime::now_utc(),
            attempts: 0,
        }
    }

    /// `item`, stored in the inbox `ms` milliseconds ago.
    fn arrived(mut item: InboxItem, ms: i64) -> InboxItem {
        item.received_at = OffsetDateTime::now_utc() - time::Duration::milliseconds(ms);
        item
    }

    fn signal(id: i64) -> InboxItem {
        InboxItem {
            id: InboxId(id),
            org: org(),
            connection: conn(),
            item: Inbound::Signal(ConnectionSignal::GrantRevoked { reason: "x".into() }),
            received_at: OffsetDateTime::now_utc(),
            attempts: 0,
        }
    }

    const C1: &str = "slack:T1/C1";
    const C2: &str = "slack:T1/C2";

    fn deferred(plan: &Plan) -> Vec<i64> {
        plan.defer
            .iter()
            .flat_map(|(_, ids)| ids.iter().map(|i| i.0))
            .collect()
    }

    #[test]
    fn a_lease_is_translated_oldest_first_per_channel() {
        let r = Reorder::new(Duration::from_secs(1));
        let items = [
            posted(1, C1, 30),
            posted(2, C2, 5),
            signal(3),
            posted(4, C1, 10),
            posted(5, C1, 20),
        ];
        let plan = r.plan(&items);
        // C1's slots (0, 3, 4) take its events by time (4, 5, 1); C2 and the signal stay.
        assert_eq!(plan.translate, [3, 1, 2, 4, 0]);
        assert!(plan.defer.is_empty(), "no window learned yet");
    }

    #[test]
    fn a_late_event_teaches_a_window_and_events_then_wait_it_from_their_arrival() {
        let r = Reorder::new(Duration::from_secs(1));
        r.translated(&posted(1, C1, 100), true);
        assert_eq!(r.window(&org(), &conn()), None, "in order so far");
        r.translated(&posted(2, C1, 40), true);
        // 60 ms late: twice that is below the floor.
        assert_eq!(r.window(&org(), &conn()), Some(MIN_WINDOW));

        // One that has waited the window goes; newer ones that have not are given back
        // until the first of them will have (and a little more, to release several).
        let lease = [
            arrived(posted(3, C1, 200), 300),
            posted(4, C1, 260),
            posted(5, C1, 230),
            posted(6, C2, 300),
            signal(7),
        ];
        let plan = r.plan(&lease);
        assert_eq!(plan.translate, [0, 4]);
        assert_eq!(deferred(&plan), [5, 4, 6], "C1's in its order, then C2's");
        for (wait, _) in &plan.defer {
            assert!(
                *wait > MIN_WINDOW - Duration::from_millis(50)
                    && *wait <= MIN_WINDOW + RELEASE_GRAIN,
                "{wait:?}"
            );
        }
        assert_eq!(r.next_due(), None, "until the store took them back");
        r.deferred_until(Instant::now() + MIN_WINDOW);
        assert!(r.next_due().is_some());

        // A late one, older than one that has waited, goes with it and before it.
        let lease = [arrived(posted(8, C1, 500), 300), posted(9, C1, 450)];
        assert_eq!(r.plan(&lease).translate, [1, 0]);
    }

    #[test]
    fn windows_grow_with_lateness_up_to_the_cap_and_ignore_replays_and_redeliveries() {
        let r = Reorder::new(Duration::from_millis(800));
        r.translated(&posted(1, C1, 1_000), true);
        r.translated(&posted(2, C1, 700), true);
        assert_eq!(r.window(&org(), &conn()), Some(Duration::from_millis(600)));
        r.translated(&posted(3, C1, 400), true);
        assert_eq!(r.window(&org(), &conn()), Some(Duration::from_millis(800)));
        // A replay (an hour late) teaches nothing, nor a redelivery of something relayed.
        let other = Reorder::new(Duration::from_millis(800));
        other.translated(&posted(1, C1, 3_600_000), true);
        other.translated(&posted(2, C1, 0), true);
        other.translated(&posted(3, C1, 3_599_900), false);
        assert_eq!(other.window(&org(), &conn()), None);
        // Disabled: nothing is learned or held.
        let off = Reorder::new(Duration::ZERO);
        off.translated(&posted(1, C1, 100), true);
        off.translated(&posted(2, C1, 50), true);
        assert_eq!(off.plan(&[posted(3, C1, 200)]).translate, [0]);
    }
}
