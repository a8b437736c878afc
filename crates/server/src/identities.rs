//! The identity map as an admin sees it: who matched whom across platforms (by verified
//! email, or by an admin's override), the conflicts an admin should resolve, and who has no
//! counterpart.
//!
//! Matching follows the store's [`counterpart`](switchboard_core::DirectoryStore::counterpart)
//! rule exactly, computed here over the whole directory at once (one listing instead of one
//! query per user): a manual link first; else the live (not removed, not deleted) user of the
//! other platform with the same email (trimmed, case-insensitive) who is not manually linked
//! towards the first user's platform, non-bots before bots, then by id.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use switchboard_core::{
    IdentityLink, MAX_PAGE_SIZE, OrgId, PlatformKind, Result, Store, StoredUser, UserId,
};
use utoipa::ToSchema;

/// One user as the identity map shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UserSummary {
    /// `msteams` or `slack`.
    pub platform: String,
    /// The platform's user id.
    pub id: String,
    /// The name people see.
    pub display_name: String,
    /// The email, when the platform shares it.
    pub email: Option<String>,
    /// Gone upstream (removed since the last import, or deactivated).
    pub gone: bool,
    /// A bot or app identity.
    pub is_bot: bool,
}

/// How a pair was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// The same verified email on both platforms.
    Email,
    /// An admin linked them.
    Override,
}

/// Two accounts of one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IdentityPair {
    /// The user on the platform whose name sorts first (`msteams`).
    pub a: UserSummary,
    /// The user on the other platform.
    pub b: UserSummary,
    /// Email or override.
    pub matched_by: MatchedBy,
}

/// Something in the identity map an admin should look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IdentityConflict {
    /// `shared_email`, `override_contradicts_email` or `override_to_gone_user`.
    pub kind: &'static str,
    /// The users involved.
    pub users: Vec<UserSummary>,
    /// What is wrong and what Switchboard does meanwhile, in words.
    pub message: String,
}

/// Two accounts an admin said are not the same person (email matching never pairs them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SeparatedPair {
    /// The user on the platform whose name sorts first (`msteams`).
    pub a: UserSummary,
    /// The user on the other platform.
    pub b: UserSummary,
}

/// The identity map of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IdentityMap {
    /// Matched accounts, overrides first, then by the first user's name.
    pub pairs: Vec<IdentityPair>,
    /// Accounts kept apart by an admin.
    pub separations: Vec<SeparatedPair>,
    /// Conflicts to resolve.
    pub conflicts: Vec<IdentityConflict>,
    /// Live people (not bots) with no counterpart on any other platform, by name.
    pub unmatched: Vec<UserSummary>,
    /// Users in the directory, all platforms.
    pub users: usize,
}

type Key = (PlatformKind, UserId);

fn norm_email(u: &StoredUser) -> Option<String> {
    u.user
        .email
        .as_deref()
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
}

fn live(u: &StoredUser) -> bool {
    !u.removed && !u.user.is_deleted
}

fn summary(u: &StoredUser) -> UserSummary {
    UserSummary {
        platform: u.platform.to_string(),
        id: u.user.id.to_string(),
        display_name: u.user.display_name.clone(),
        email: u.user.email.clone(),
        gone: !live(u),
        is_bot: u.user.is_bot,
    }
}

fn placeholder(k: &Key) -> UserSummary {
    UserSummary {
        platform: k.0.to_string(),
        id: k.1.to_string(),
        display_name: k.1.to_string(),
        email: None,
        gone: true,
        is_bot: false,
    }
}

/// Every user of `org`, all platforms (paged through the store).
pub async fn all_users(store: &dyn Store, org: &OrgId) -> Result<Vec<StoredUser>> {
    let mut out: Vec<StoredUser> = Vec::new();
    loop {
        let after = out.last().map(|u| (u.platform, u.user.id.clone()));
        let page = store
            .list_users(
                org,
                None,
                after.as_ref().map(|(p, u)| (*p, u)),
                MAX_PAGE_SIZE,
            )
            .await?;
        let done = page.len() < MAX_PAGE_SIZE;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// Computes the identity map from the directory, the manual links and the separations.
pub fn compute(
    users: &[StoredUser],
    links: &[IdentityLink],
    separations: &[IdentityLink],
) -> IdentityMap {
    let by_key: HashMap<Key, &StoredUser> = users
        .iter()
        .map(|u| ((u.platform, u.user.id.clone()), u))
        .collect();
    // (user, target platform) → linked user.
    let mut manual: HashMap<(Key, PlatformKind), Key> = HashMap::new();
    for l in links {
        manual.insert((l.a.clone(), l.b.0), l.b.clone());
        manual.insert((l.b.clone(), l.a.0), l.a.clone());
    }
    let mut apart: HashSet<(Key, Key)> = HashSet::new();
    for x in separations {
        apart.insert((x.a.clone(), x.b.clone()));
        apart.insert((x.b.clone(), x.a.clone()));
    }
    // (platform, email) → live users with it, non-bots first, then by id.
    let mut by_email: HashMap<(PlatformKind, String), Vec<&StoredUser>> = HashMap::new();
    for u in users.iter().filter(|u| live(u)) {
        if let Some(e) = norm_email(u) {
            by_email.entry((u.platform, e)).or_default().push(u);
        }
    }
    for list in by_email.values_mut() {
        list.sort_by(|x, y| (x.user.is_bot, &x.user.id).cmp(&(y.user.is_bot, &y.user.id)));
    }
    let platforms: Vec<PlatformKind> = {
        let mut p: Vec<PlatformKind> = users.iter().map(|u| u.platform).collect();
        p.sort();
        p.dedup();
        p
    };
    // The email match of `u` on `target`, ignoring `u`'s own overrides but honouring the
    // candidates' (a candidate linked towards `u`'s platform is taken).
    let email_match = |u: &StoredUser, target: PlatformKind| -> Option<&StoredUser> {
        let e = norm_email(u)?;
        by_email.get(&(target, e))?.iter().copied().find(|t| {
            let tk = (t.platform, t.user.id.clone());
            !manual.contains_key(&(tk.clone(), u.platform))
                && !apart.contains(&((u.platform, u.user.id.clone()), tk))
        })
    };

    let mut pairs = Vec::new();
    let mut conflicts = Vec::new();
    let mut matched: HashSet<Key> = HashSet::new();
    for l in links {
        let a = by_key
            .get(&l.a)
            .map(|u| summary(u))
            .unwrap_or_else(|| placeholder(&l.a));
        let b = by_key
            .get(&l.b)
            .map(|u| summary(u))
            .unwrap_or_else(|| placeholder(&l.b));
        matched.insert(l.a.clone());
        matched.insert(l.b.clone());
        if a.gone || b.gone {
            let gone = if a.gone { &a } else { &b };
            conflicts.push(IdentityConflict {
                kind: "override_to_gone_user",
                users: vec![a.clone(), b.clone()],
                message: format!(
                    "{} is overridden to match {}, but {} is gone from {} (removed or deactivated); mentions still map to it until the override is removed",
                    a.display_name, b.display_name, gone.display_name, gone.platform
                ),
            });
        }
        for (side, other) in [(&l.a, &l.b), (&l.b, &l.a)] {
            let Some(u) = by_key.get(side) else { continue };
            let Some(e) = norm_email(u) else { continue };
            let contradicting = by_email
                .get(&(other.0, e.clone()))
                .and_then(|v| v.iter().find(|t| t.user.id != other.1));
            if let Some(t) = contradicting {
                let linked = by_key
                    .get(other)
                    .map(|x| summary(x))
                    .unwrap_or_else(|| placeholder(other));
                conflicts.push(IdentityConflict {
                    kind: "override_contradicts_email",
                    users: vec![summary(u), linked.clone(), summary(t)],
                    message: format!(
                        "{} ({}) is overridden to match {}, but {} on {} has the same email {e}; the override wins",
                        u.user.display_name, u.platform, linked.display_name, t.user.display_name, t.platform
                    ),
                });
            }
        }
        pairs.push(IdentityPair {
            a,
            b,
            matched_by: MatchedBy::Override,
        });
    }
    for (i, p) in platforms.iter().enumerate() {
        for q in &platforms[i + 1..] {
            for u in users.iter().filter(|u| u.platform == *p) {
                let key = (u.platform, u.user.id.clone());
                if manual.contains_key(&(key.clone(), *q)) {
                    continue;
                }
                if let Some(t) = email_match(u, *q) {
                    matched.insert(key);
                    matched.insert((t.platform, t.user.id.clone()));
                    pairs.push(IdentityPair {
                        a: summary(u),
                        b: summary(t),
                        matched_by: MatchedBy::Email,
                    });
                }
            }
        }
    }
    let mut shared: BTreeMap<(String, String), Vec<UserSummary>> = BTreeMap::new();
    for ((platform, email), list) in &by_email {
        let people: Vec<&&StoredUser> = list.iter().filter(|u| !u.user.is_bot).collect();
        if people.len() > 1 {
            shared.insert(
                (platform.to_string(), email.clone()),
                people.iter().map(|u| summary(u)).collect(),
            );
        }
    }
    for ((platform, email), list) in shared {
        let chosen = list[0].display_name.clone();
        conflicts.push(IdentityConflict {
            kind: "shared_email",
            message: format!(
                "{} {platform} accounts share the email {email}: the other platforms match the first by id ({chosen}); link the right one by hand",
                list.len()
            ),
            users: list,
        });
    }
    pairs.sort_by(|x, y| {
        (x.matched_by == MatchedBy::Email, &x.a.display_name, &x.a.id).cmp(&(
            y.matched_by == MatchedBy::Email,
            &y.a.display_name,
            &y.a.id,
        ))
    });
    let mut unmatched: Vec<UserSummary> = users
        .iter()
        .filter(|u| live(u) && !u.user.is_bot)
        .filter(|u| !matched.contains(&(u.platform, u.user.id.clone())))
        .map(summary)
        .collect();
    unmatched.sort_by(|x, y| (&x.display_name, &x.id).cmp(&(&y.display_name, &y.id)));
    let separations = separations
        .iter()
        .map(|x| SeparatedPair {
            a: by_key
                .get(&x.a)
                .map(|u| summary(u))
                .unwrap_or_else(|| placeholder(&x.a)),
            b: by_key
                .get(&x.b)
                .map(|u| summary(u))
                .unwrap_or_else(|| placeholder(&x.b)),
        })
        .collect();
    IdentityMap {
        pairs,
        separations,
        conflicts,
        unmatched,
        users: users.len(),
    }
}

/// The identity map of `org`, read from the store.
pub async fn load(store: &dyn Store, org: &OrgId) -> Result<IdentityMap> {
    let users = all_users(store, org).await?;
    let links = store.list_identity_links(org).await?;
    let separations = store.list_identity_separations(org).await?;
    Ok(compute(&users, &links, &separations))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{ConnectionId, User};
    use time::OffsetDateTime;

    fn u(platform: PlatformKind, id: &str, name: &str, email: Option<&str>) -> StoredUser {
        StoredUser {
            connection: ConnectionId::new("c").unwrap(),
            platform,
            user: User {
                id: UserId::new(id).unwrap(),
                display_name: name.into(),
                email: email.map(str::to_owned),
                avatar_url: None,
                is_guest: false,
                is_bot: false,
                is_deleted: false,
            },
            removed: false,
        }
    }

    const T: PlatformKind = PlatformKind::Msteams;
    const S: PlatformKind = PlatformKind::Slack;

    fn link(a: (PlatformKind, &str), b: (PlatformKind, &str)) -> IdentityLink {
        IdentityLink {
            a: (a.0, UserId::new(a.1).unwrap()),
            b: (b.0, UserId::new(b.1).unwrap()),
            created_at: OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn emails_match_case_insensitively_and_the_rest_is_unmatched() {
        let users = vec![
            u(T, "A1", "Alice", Some(" Alice@Contoso.com")),
            u(T, "B1", "Bob", None),
            u(S, "U1", "alice", Some("alice@contoso.com")),
            u(S, "U2", "carol", Some("carol@contoso.com")),
        ];
        let m = compute(&users, &[], &[]);
        assert_eq!(m.pairs.len(), 1);
        assert_eq!(m.pairs[0].a.id, "A1");
        assert_eq!(m.pairs[0].b.id, "U1");
        assert_eq!(m.pairs[0].matched_by, MatchedBy::Email);
        let unmatched: Vec<&str> = m.unmatched.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(unmatched, vec!["B1", "U2"]);
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn overrides_win_and_contradictions_and_shared_emails_are_conflicts() {
        let mut gone = u(S, "U9", "old bob", Some("bob@contoso.com"));
        gone.removed = true;
        let users = vec![
            u(T, "A1", "Alice", Some("alice@contoso.com")),
            u(T, "B1", "Bob", Some("bob@contoso.com")),
            u(S, "U1", "alice", Some("alice@contoso.com")),
            u(S, "U2", "alice2", Some("ALICE@contoso.com")),
            u(S, "U3", "robert", Some("robert@contoso.com")),
            gone,
        ];
        // Bob is linked by hand to "robert", whose email differs: Bob's email matches no
        // live Slack user (U9 is gone), so no contradiction from his side.
        let m = compute(&users, &[link((T, "B1"), (S, "U3"))], &[]);
        assert_eq!(m.pairs[0].matched_by, MatchedBy::Override);
        assert_eq!(
            (m.pairs[0].a.id.as_str(), m.pairs[0].b.id.as_str()),
            ("B1", "U3")
        );
        // Alice matches U1 (lower id) among the two Slack accounts sharing her email.
        assert!(m.pairs.iter().any(|p| p.a.id == "A1" && p.b.id == "U1"));
        let kinds: Vec<&str> = m.conflicts.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, vec!["shared_email"]);
        assert_eq!(m.conflicts[0].users.len(), 2);

        // Linking Alice to U2 by hand contradicts the email match with U1.
        let m = compute(&users, &[link((T, "A1"), (S, "U2"))], &[]);
        assert!(m.conflicts.iter().any(
            |c| c.kind == "override_contradicts_email" && c.users.iter().any(|x| x.id == "U1")
        ));
        assert!(m.pairs.iter().all(|p| !(p.a.id == "A1" && p.b.id == "U1")));

        // A link to a user who is gone is flagged.
        let m = compute(&users, &[link((T, "B1"), (S, "U9"))], &[]);
        assert!(
            m.conflicts
                .iter()
                .any(|c| c.kind == "override_to_gone_user")
        );

        // Alice separated from U1: email matching moves on to U2 and U1 is unmatched.
        let m = compute(&users, &[], &[link((T, "A1"), (S, "U1"))]);
        assert!(m.pairs.iter().any(|p| p.a.id == "A1" && p.b.id == "U2"));
        assert!(m.pairs.iter().all(|p| p.b.id != "U1"));
        assert!(m.unmatched.iter().any(|u| u.id == "U1"));
        assert_eq!(m.separations.len(), 1);
    }
}
