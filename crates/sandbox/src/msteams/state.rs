//! The tenant directory (users, roles, teams, channels, messages) and the seeds.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::model::{Channel, Member, MembershipType, Msg, Role, Team, User, UserType};
use crate::Seed;

/// Number of generated users in the large seed (`user00001` … `user20000`).
pub(crate) const LARGE_USERS: u32 = 20_000;
/// Number of generated teams in the large seed.
pub(crate) const LARGE_TEAMS: u32 = 1_000;
/// Channels per generated team (General included).
pub(crate) const LARGE_CHANNELS_PER_TEAM: u32 = 10;

/// Password of the seeded service account.
pub(crate) const SVC_PASSWORD: &str = "Switchboard-Svc-Passw0rd!";
/// Password of the underprivileged admin.
pub(crate) const JR_PASSWORD: &str = "Junior-Admin-Passw0rd!";
/// Password of every other seeded member account.
pub(crate) const USER_PASSWORD: &str = "Contoso-User-Passw0rd!";

/// Deterministic bytes for seeded identifiers.
fn digest(kind: &str, n: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"switchboard-sandbox/msteams/");
    h.update(kind.as_bytes());
    h.update(b"/");
    h.update(n.to_le_bytes());
    h.finalize().into()
}

/// A deterministic GUID (version-4 shaped) for a seeded object.
pub(crate) fn guid(kind: &str, n: u64) -> String {
    let d = digest(kind, n);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A deterministic channel id `19:<32 hex>@thread.tacv2`.
pub(crate) fn channel_id(n: u64) -> String {
    let d = digest("channel", n);
    format!("19:{}@thread.tacv2", hex::encode(&d[..16]))
}

/// The conversation-member id of `user` in `team`: opaque to clients (base64 of
/// `0#<team>#<user>`), decodable here so memberships need no storage of their own.
pub(crate) fn membership_id(team_id: &str, user_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("0#{team_id}#{user_id}"))
}

/// Decodes a membership id into (team id, user id).
pub(crate) fn parse_membership_id(id: &str) -> Option<(String, String)> {
    let raw = URL_SAFE_NO_PAD.decode(id.trim_end_matches('=')).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let mut parts = s.splitn(3, '#');
    if parts.next()? != "0" {
        return None;
    }
    let team = parts.next()?.to_owned();
    let user = parts.next()?.to_owned();
    Some((team, user))
}

/// The seeded app registration.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub client_id: String,
    pub client_secret: String,
    pub display_name: String,
}

/// The directory and everything stored per team and channel.
#[derive(Debug)]
pub(crate) struct Dir {
    pub tenant_id: String,
    pub tenant_name: String,
    /// The initial domain (`contoso.onmicrosoft.com`).
    pub domain: String,
    /// Verified custom domain (`contoso.com`).
    pub custom_domain: String,
    pub app: App,
    pub users: Vec<User>,
    pub user_by_id: HashMap<String, u32>,
    pub user_by_upn: HashMap<String, u32>,
    pub user_by_mail: HashMap<String, u32>,
    /// Per-tenant ids of the directory roles (index = role).
    pub role_ids: [String; 4],
    /// The "All Company" group every member belongs to, and its parent group (transitive).
    pub all_company_group: String,
    pub everyone_group: String,
    pub teams: Vec<Team>,
    pub team_by_id: HashMap<String, u32>,
    /// Channel id → (team index, channel index).
    pub channel_by_id: HashMap<String, (u32, u32)>,
    pub service_account: u32,
    pub underprivileged: u32,
    /// Global change sequence (messages).
    pub seq: u64,
    /// Last message id handed out.
    pub last_msg_id: u64,
}

struct Builder {
    dir: Dir,
    now_ms: u64,
    team_n: u64,
    channel_n: u64,
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    fn user(
        &mut self,
        n: u64,
        display: &str,
        given: Option<&str>,
        surname: Option<&str>,
        mail: Option<&str>,
        upn: &str,
        user_type: UserType,
        password: Option<&str>,
        roles: &[Role],
        job_title: Option<&'static str>,
    ) -> u32 {
        let ix = self.dir.users.len() as u32;
        let id = guid("user", n);
        self.dir.user_by_id.insert(id.clone(), ix);
        self.dir.user_by_upn.insert(upn.to_ascii_lowercase(), ix);
        if let Some(m) = mail {
            self.dir.user_by_mail.insert(m.to_ascii_lowercase(), ix);
        }
        self.dir.users.push(User {
            id,
            display_name: display.to_owned(),
            given_name: given.map(str::to_owned),
            surname: surname.map(str::to_owned),
            mail: mail.map(str::to_owned),
            upn: upn.to_owned(),
            user_type,
            account_enabled: true,
            job_title,
            password: password.map(str::to_owned),
            roles: roles.iter().fold(0, |a, r| a | r.bit()),
            created_ms: self.now_ms - 86_400_000 * 90,
        });
        ix
    }

    fn team(&mut self, name: &str, description: &str, members: &[(u32, bool)]) -> u32 {
        self.team_n += 1;
        let ix = self.dir.teams.len() as u32;
        let id = guid("team", self.team_n);
        self.dir.team_by_id.insert(id.clone(), ix);
        let since = self.now_ms - 86_400_000 * 60;
        self.dir.teams.push(Team {
            id,
            display_name: name.to_owned(),
            description: description.to_owned(),
            created_ms: self.now_ms - 86_400_000 * 60,
            visibility: "private",
            members: members
                .iter()
                .map(|&(user, owner)| Member {
                    user,
                    owner,
                    since_ms: since,
                })
                .collect(),
            channels: Vec::new(),
        });
        ix
    }

    fn channel(
        &mut self,
        team: u32,
        name: &str,
        description: &str,
        kind: MembershipType,
        members: &[(u32, bool)],
    ) {
        self.channel_n += 1;
        let id = channel_id(self.channel_n);
        let t = &mut self.dir.teams[team as usize];
        let cix = t.channels.len() as u32;
        self.dir.channel_by_id.insert(id.clone(), (team, cix));
        t.channels.push(Channel {
            id,
            display_name: name.to_owned(),
            description: description.to_owned(),
            membership_type: kind,
            created_ms: self.now_ms - 86_400_000 * 59,
            members: if kind == MembershipType::Standard {
                Vec::new()
            } else {
                members.to_vec()
            },
            msgs: None,
        });
    }
}

impl Dir {
    /// Builds the seeded tenant.
    pub fn build(seed: Seed) -> Dir {
        let now_ms = crate::util::now_unix_ms() as u64;
        let large = seed == Seed::Large;
        let extra_users = if large { LARGE_USERS as usize } else { 0 };
        let dir = Dir {
            tenant_id: guid("tenant", 1),
            tenant_name: "Contoso".into(),
            domain: "contoso.onmicrosoft.com".into(),
            custom_domain: "contoso.com".into(),
            app: App {
                client_id: guid("app", 1),
                client_secret: format!("sbx~{}", hex::encode(&digest("app-secret", 1)[..20])),
                display_name: "Switchboard".into(),
            },
            users: Vec::with_capacity(16 + extra_users),
            user_by_id: HashMap::with_capacity(16 + extra_users),
            user_by_upn: HashMap::with_capacity(16 + extra_users),
            user_by_mail: HashMap::with_capacity(16 + extra_users),
            role_ids: [
                guid("role", 0),
                guid("role", 1),
                guid("role", 2),
                guid("role", 3),
            ],
            all_company_group: guid("group", 1),
            everyone_group: guid("group", 2),
            teams: Vec::new(),
            team_by_id: HashMap::new(),
            channel_by_id: HashMap::new(),
            service_account: 0,
            underprivileged: 0,
            seq: 0,
            last_msg_id: 0,
        };
        let mut b = Builder {
            dir,
            now_ms,
            team_n: 0,
            channel_n: 0,
        };
        let pw = Some(USER_PASSWORD);
        let m = UserType::Member;
        let alice = b.user(
            1,
            "Alice Johnson",
            Some("Alice"),
            Some("Johnson"),
            Some("alice@contoso.com"),
            "alice@contoso.onmicrosoft.com",
            m,
            pw,
            &[Role::GLOBAL_ADMIN],
            Some("Engineering Manager"),
        );
        let bob = b.user(
            2,
            "Bob Smith",
            Some("Bob"),
            Some("Smith"),
            Some("bob@contoso.com"),
            "bob@contoso.onmicrosoft.com",
            m,
            pw,
            &[],
            Some("Software Engineer"),
        );
        let carol = b.user(
            3,
            "Carol Diaz",
            Some("Carol"),
            Some("Diaz"),
            Some("carol@contoso.com"),
            "carol@contoso.onmicrosoft.com",
            m,
            pw,
            &[],
            Some("Marketing Lead"),
        );
        let dan = b.user(
            4,
            "Dan Wu",
            Some("Dan"),
            Some("Wu"),
            Some("dan@contoso.com"),
            "dan@contoso.onmicrosoft.com",
            m,
            pw,
            &[],
            Some("Site Reliability Engineer"),
        );
        let frank = b.user(
            5,
            "Frank Müller",
            Some("Frank"),
            Some("Müller"),
            Some("frank@contoso.com"),
            "frank@contoso.onmicrosoft.com",
            m,
            pw,
            &[],
            Some("Designer"),
        );
        let guest = b.user(
            6,
            "Gina Guest (Fabrikam)",
            Some("Gina"),
            Some("Guest"),
            Some("guest@fabrikam.com"),
            "guest_fabrikam.com#EXT#@contoso.onmicrosoft.com",
            UserType::Guest,
            None,
            &[],
            None,
        );
        let svc = b.user(
            7,
            "Switchboard Service",
            None,
            None,
            Some("switchboard-svc@contoso.onmicrosoft.com"),
            "switchboard-svc@contoso.onmicrosoft.com",
            m,
            Some(SVC_PASSWORD),
            &[Role::APPLICATION_ADMIN, Role::TEAMS_ADMIN, Role::USER_ADMIN],
            Some("Service account"),
        );
        let jr = b.user(
            8,
            "Junior Admin",
            Some("Junior"),
            Some("Admin"),
            Some("jr-admin@contoso.onmicrosoft.com"),
            "jr-admin@contoso.onmicrosoft.com",
            m,
            Some(JR_PASSWORD),
            &[Role::APPLICATION_ADMIN],
            Some("IT Associate"),
        );
        let former = b.user(
            9,
            "Former Employee",
            Some("Former"),
            Some("Employee"),
            Some("former@contoso.com"),
            "former@contoso.onmicrosoft.com",
            m,
            pw,
            &[],
            None,
        );
        b.dir.users[former as usize].account_enabled = false;
        b.dir.service_account = svc;
        b.dir.underprivileged = jr;

        if large {
            for i in 1..=LARGE_USERS {
                let mail = format!("user{i:05}@contoso.com");
                let upn = format!("user{i:05}@contoso.onmicrosoft.com");
                let display = format!("User {i:05}");
                let num = format!("{i:05}");
                b.user(
                    1000 + u64::from(i),
                    &display,
                    Some("User"),
                    Some(&num),
                    Some(&mail),
                    &upn,
                    m,
                    pw,
                    &[],
                    None,
                );
            }
            let first = (b.dir.users.len() as u32) - LARGE_USERS;
            b.dir.teams.reserve(LARGE_TEAMS as usize);
            for t in 1..=LARGE_TEAMS {
                let mut members: Vec<(u32, bool)> = vec![(svc, true)];
                for k in 0..5u32 {
                    let u = first + (t * 37 + k * 4001) % LARGE_USERS;
                    if !members.iter().any(|(x, _)| *x == u) {
                        members.push((u, k == 0));
                    }
                }
                let name = format!("Team {t:04}");
                let desc = format!("Generated team {t:04}.");
                let ti = b.team(&name, &desc, &members);
                let chan_members = [(svc, true), members[1], members[2]];
                for c in 0..LARGE_CHANNELS_PER_TEAM {
                    let (cname, kind) = match c {
                        0 => ("General".to_owned(), MembershipType::Standard),
                        1..=6 => (format!("Channel {c:02}"), MembershipType::Standard),
                        7 | 8 => (format!("Private {c:02}"), MembershipType::Private),
                        _ => (format!("Shared {c:02}"), MembershipType::Shared),
                    };
                    b.channel(ti, &cname, "", kind, &chan_members);
                }
            }
        } else {
            let eng = b.team(
                "Engineering",
                "Everything engineering: backend, frontend, incidents.",
                &[
                    (svc, true),
                    (alice, true),
                    (bob, false),
                    (carol, false),
                    (dan, false),
                    (frank, false),
                    (guest, false),
                    (jr, false),
                ],
            );
            b.channel(
                eng,
                "General",
                "Engineering general discussion.",
                MembershipType::Standard,
                &[],
            );
            b.channel(
                eng,
                "Backend",
                "APIs, services and databases.",
                MembershipType::Standard,
                &[],
            );
            b.channel(
                eng,
                "Frontend",
                "Web and mobile clients (private).",
                MembershipType::Private,
                &[(alice, true), (bob, false), (svc, false)],
            );
            b.channel(
                eng,
                "Incidents",
                "Incident response, shared with operations.",
                MembershipType::Shared,
                &[(alice, true), (carol, false), (dan, false), (svc, false)],
            );
            let mkt = b.team(
                "Marketing",
                "Campaigns, content and events.",
                &[
                    (svc, true),
                    (carol, true),
                    (alice, false),
                    (bob, false),
                    (dan, false),
                    (frank, false),
                ],
            );
            b.channel(
                mkt,
                "General",
                "Marketing general discussion.",
                MembershipType::Standard,
                &[],
            );
            b.channel(
                mkt,
                "Campaigns",
                "Campaign planning.",
                MembershipType::Standard,
                &[],
            );
            let lead = b.team(
                "Leadership",
                "Leadership team.",
                &[(alice, true), (bob, false), (dan, false)],
            );
            b.channel(
                lead,
                "General",
                "Leadership general discussion.",
                MembershipType::Standard,
                &[],
            );
        }
        b.dir
    }

    /// Finds a user by id, UPN or mail (case-insensitive for the last two).
    pub fn find_user(&self, key: &str) -> Option<u32> {
        if let Some(ix) = self.user_by_id.get(key) {
            return Some(*ix);
        }
        let lower = key.to_ascii_lowercase();
        self.user_by_id
            .get(&lower)
            .or_else(|| self.user_by_upn.get(&lower))
            .or_else(|| self.user_by_mail.get(&lower))
            .copied()
    }

    /// Finds a team by id, or (for the control API) by display name.
    pub fn find_team(&self, key: &str, by_name: bool) -> Option<u32> {
        if let Some(ix) = self.team_by_id.get(key) {
            return Some(*ix);
        }
        if let Some(ix) = self.team_by_id.get(&key.to_ascii_lowercase()) {
            return Some(*ix);
        }
        if by_name {
            return self
                .teams
                .iter()
                .position(|t| t.display_name.eq_ignore_ascii_case(key))
                .map(|i| i as u32);
        }
        None
    }

    /// Finds a channel of `team` by id, or (for the control API) by display name.
    pub fn find_channel(&self, team: u32, key: &str, by_name: bool) -> Option<u32> {
        if let Some(&(t, c)) = self.channel_by_id.get(key) {
            return (t == team).then_some(c);
        }
        if by_name {
            return self.teams[team as usize]
                .channels
                .iter()
                .position(|c| c.display_name.eq_ignore_ascii_case(key))
                .map(|i| i as u32);
        }
        None
    }

    /// The next message id (ms timestamp, strictly increasing).
    pub fn next_msg_id(&mut self) -> u64 {
        let now = crate::util::now_unix_ms() as u64;
        let id = now.max(self.last_msg_id + 1);
        self.last_msg_id = id;
        id
    }

    /// The next change sequence number.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn channel(&self, team: u32, ch: u32) -> &Channel {
        &self.teams[team as usize].channels[ch as usize]
    }

    pub fn channel_mut(&mut self, team: u32, ch: u32) -> &mut Channel {
        &mut self.teams[team as usize].channels[ch as usize]
    }

    /// A message of a channel by id.
    pub fn msg(&self, team: u32, ch: u32, id: u64) -> Option<&Msg> {
        self.channel(team, ch).msgs.as_ref()?.map.get(&id)
    }

    /// Indices of the teams `user` is a member of, in seed order.
    pub fn joined_teams(&self, user: u32) -> Vec<u32> {
        self.teams
            .iter()
            .enumerate()
            .filter(|(_, t)| t.member(user).is_some())
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Adds `user` to team `team`; returns false when already a member.
    pub fn add_member(&mut self, team: u32, user: u32, owner: bool) -> bool {
        let now = crate::util::now_unix_ms() as u64;
        let t = &mut self.teams[team as usize];
        if let Some(m) = t.members.iter_mut().find(|m| m.user == user) {
            if owner {
                m.owner = true;
            }
            return false;
        }
        t.members.push(Member {
            user,
            owner,
            since_ms: now,
        });
        true
    }

    /// Removes `user` from team `team` (and its private/shared channels); false when not a
    /// member.
    pub fn remove_member(&mut self, team: u32, user: u32) -> bool {
        let t = &mut self.teams[team as usize];
        let before = t.members.len();
        t.members.retain(|m| m.user != user);
        if t.members.len() == before {
            return false;
        }
        for c in &mut t.channels {
            c.members.retain(|(u, _)| *u != user);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_ids_round_trip() {
        let id = membership_id("t-1", "u-2");
        assert_eq!(
            parse_membership_id(&id),
            Some(("t-1".to_owned(), "u-2".to_owned()))
        );
        assert_eq!(parse_membership_id("not base64!"), None);
    }

    #[test]
    fn seeds_are_deterministic() {
        let a = Dir::build(Seed::Small);
        let b = Dir::build(Seed::Small);
        assert_eq!(a.tenant_id, b.tenant_id);
        assert_eq!(a.teams[0].channels[0].id, b.teams[0].channels[0].id);
        assert!(a.teams[0].channels[0].id.starts_with("19:"));
        assert!(a.teams[0].channels[0].id.ends_with("@thread.tacv2"));
        assert_eq!(a.teams.len(), 3);
    }

    #[test]
    fn large_seed_shape() {
        let d = Dir::build(Seed::Large);
        assert_eq!(d.teams.len(), LARGE_TEAMS as usize);
        assert!(d.teams.iter().all(|t| t.channels.len() == 10));
        assert!(
            d.teams
                .iter()
                .all(|t| t.member(d.service_account).is_some())
        );
        assert!(d.find_user("user00001@contoso.com").is_some());
        assert!(d.find_user("USER20000@contoso.com").is_some());
    }
}
