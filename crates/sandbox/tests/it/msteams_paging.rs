//! `@odata.nextLink` paging over the large seed: every team and user exactly once.

#[allow(unused_imports)]
use crate::msteams_support;

use std::collections::HashSet;

use msteams_support::*;
use serde_json::Value;
use switchboard_sandbox::Seed;

/// Follows `@odata.nextLink` verbatim from `first`; returns every item and the page count.
async fn collect(env: &Env, token: &str, first: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = Some(first.to_owned());
    while let Some(url) = next {
        let r = env.get(token, &url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        pages += 1;
        items.extend(r.body["value"].as_array().unwrap().iter().cloned());
        next = r.body["@odata.nextLink"].as_str().map(str::to_owned);
        if let Some(n) = &next {
            assert!(n.starts_with(&env.graph), "absolute nextLink: {n}");
        }
    }
    (items, pages)
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_exactly_once(got: &[String], expected: &[String]) {
    let set: HashSet<&String> = got.iter().collect();
    assert_eq!(set.len(), got.len(), "duplicates in the paged result");
    let want: HashSet<&String> = expected.iter().collect();
    assert_eq!(set, want);
}

#[tokio::test]
async fn large_seed_teams_and_users_page_exactly_once() {
    let env = start(Seed::Large, 0.0).await;
    let seed = env.seed().await;
    let seed_teams: Vec<String> = ids(seed["teams"].as_array().unwrap());
    let seed_users: Vec<String> = ids(seed["users"].as_array().unwrap());
    assert_eq!(seed_teams.len(), 1_000);
    assert!(seed_users.len() >= 20_000);
    assert!(seed["teams"][0]["channels"].as_array().unwrap().len() == 10);

    let (teams, pages) = collect(
        &env,
        &env.svc_token,
        "/teams?$top=100&$select=id,displayName",
    )
    .await;
    assert_eq!(pages, 10);
    assert_exactly_once(&ids(&teams), &seed_teams);
    assert!(
        teams[0].get("description").is_none(),
        "$select kept across pages"
    );

    // default page size 100 for users would be 200+ pages; use the maximum
    let (users, pages) = collect(
        &env,
        &env.svc_token,
        "/users?$select=id,displayName,mail,userPrincipalName,userType,accountEnabled&$top=999",
    )
    .await;
    assert_eq!(pages, seed_users.len().div_ceil(999));
    assert_exactly_once(&ids(&users), &seed_users);
    assert!(users.iter().any(|u| u["mail"] == "user20000@contoso.com"));
    assert!(users.iter().all(|u| u.get("userType").is_some()));

    // the service account is in every team: joinedTeams lists them all, and its roles sit
    // behind the 1,000 team groups in memberOf (so filtering across pages matters)
    let joined = env.get(&env.svc_token, "/me/joinedTeams").await;
    assert_eq!(joined.body["value"].as_array().unwrap().len(), 1_000);
    let (member_of, pages) = collect(&env, &env.svc_token, "/me/memberOf").await;
    assert!(pages > 10);
    let roles = member_of
        .iter()
        .filter(|o| o["@odata.type"] == "#microsoft.graph.directoryRole")
        .count();
    assert_eq!(roles, 3);

    // a bad $skiptoken is a 400, not a crash
    let r = env.get(&env.svc_token, "/users?$skiptoken=garbage").await;
    assert_eq!(r.status, 400);
    // $top bounds
    assert_eq!(
        env.get(&env.svc_token, "/users?$top=1000").await.status,
        400
    );
}
