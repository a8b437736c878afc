//! Teams, channels and team members.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::common::{
    Caller, GResult, GraphError, Limit, Query, apply_select, authenticate, collection,
    decode_token, encode_token, graph_link, iso_ms, ok_json, parse_body, throttle, token_top,
};
use super::directory::{Filter, Lit};
use super::model::{Channel, MembershipType, Perm, Team, UserType};
use super::state::{Dir, membership_id, parse_membership_id};
use super::subscriptions::on_member_removed;
use crate::SharedWorld;

const TEAM_READ_PERMS: &[Perm] = &[
    Perm::TEAM_READBASIC_ALL,
    Perm::TEAMSETTINGS_READ_ALL,
    Perm::TEAMSETTINGS_READWRITE_ALL,
    Perm::GROUP_READ_ALL,
    Perm::GROUP_READWRITE_ALL,
    Perm::DIRECTORY_READ_ALL,
    Perm::DIRECTORY_READWRITE_ALL,
];
const CHANNEL_READ_PERMS: &[Perm] = &[
    Perm::CHANNEL_READBASIC_ALL,
    Perm::CHANNELSETTINGS_READ_ALL,
    Perm::CHANNELSETTINGS_READWRITE_ALL,
    Perm::GROUP_READ_ALL,
    Perm::GROUP_READWRITE_ALL,
    Perm::DIRECTORY_READ_ALL,
    Perm::DIRECTORY_READWRITE_ALL,
];
const MEMBER_READ_PERMS: &[Perm] = &[
    Perm::TEAMMEMBER_READ_ALL,
    Perm::TEAMMEMBER_READWRITE_ALL,
    Perm::TEAMMEMBER_READWRITENONOWNERROLE_ALL,
    Perm::GROUP_READ_ALL,
    Perm::GROUP_READWRITE_ALL,
    Perm::DIRECTORY_READ_ALL,
    Perm::DIRECTORY_READWRITE_ALL,
];
const MEMBER_WRITE_PERMS: &[Perm] = &[
    Perm::TEAMMEMBER_READWRITE_ALL,
    Perm::TEAMMEMBER_READWRITENONOWNERROLE_ALL,
    Perm::GROUP_READWRITE_ALL,
    Perm::DIRECTORY_READWRITE_ALL,
];

const TEAM_PROPS: &[&str] = &[
    "id",
    "createdDateTime",
    "displayName",
    "description",
    "internalId",
    "classification",
    "specialization",
    "visibility",
    "webUrl",
    "isArchived",
    "tenantId",
    "isMembershipLimitedToOwners",
];

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn team_web_url(dir: &Dir, t: &Team) -> String {
    let general = t.channels.first().map(|c| c.id.as_str()).unwrap_or("");
    format!(
        "https://teams.microsoft.com/l/team/{}/conversations?groupId={}&tenantId={}",
        enc(general),
        t.id,
        dir.tenant_id
    )
}

fn team_basic(dir: &Dir, t: &Team) -> Value {
    json!({
        "id": t.id,
        "createdDateTime": iso_ms(t.created_ms),
        "displayName": t.display_name,
        "description": t.description,
        "internalId": t.channels.first().map(|c| c.id.clone()),
        "classification": null,
        "specialization": "none",
        "visibility": t.visibility,
        "webUrl": team_web_url(dir, t),
        "isArchived": false,
        "tenantId": dir.tenant_id,
        "isMembershipLimitedToOwners": false,
    })
}

fn team_full(dir: &Dir, t: &Team) -> Value {
    let mut v = team_basic(dir, t);
    let owners = t.members.iter().filter(|m| m.owner).count();
    let guests = t
        .members
        .iter()
        .filter(|m| dir.users[m.user as usize].user_type == UserType::Guest)
        .count();
    v["memberSettings"] = json!({
        "allowCreateUpdateChannels": true,
        "allowDeleteChannels": true,
        "allowAddRemoveApps": true,
        "allowCreateUpdateRemoveTabs": true,
        "allowCreateUpdateRemoveConnectors": true,
        "allowCreatePrivateChannels": true,
    });
    v["guestSettings"] = json!({"allowCreateUpdateChannels": false, "allowDeleteChannels": false});
    v["messagingSettings"] = json!({
        "allowUserEditMessages": true,
        "allowUserDeleteMessages": true,
        "allowOwnerDeleteMessages": true,
        "allowTeamMentions": true,
        "allowChannelMentions": true,
    });
    v["funSettings"] = json!({
        "allowGiphy": true,
        "giphyContentRating": "moderate",
        "allowStickersAndMemes": true,
        "allowCustomMemes": true,
    });
    v["discoverySettings"] = json!({"showInTeamsSearchAndSuggestions": false});
    v["summary"] = json!({
        "ownersCount": owners,
        "membersCount": t.members.len() - owners - guests,
        "guestsCount": guests,
    });
    v
}

fn channel_json(dir: &Dir, t: &Team, c: &Channel) -> Value {
    json!({
        "id": c.id,
        "createdDateTime": iso_ms(c.created_ms),
        "displayName": c.display_name,
        "description": c.description,
        "isFavoriteByDefault": null,
        "email": "",
        "tenantId": dir.tenant_id,
        "webUrl": format!(
            "https://teams.microsoft.com/l/channel/{}/{}?groupId={}&tenantId={}",
            enc(&c.id), enc(&c.display_name), t.id, dir.tenant_id
        ),
        "membershipType": c.membership_type.as_str(),
        "isArchived": false,
    })
}

fn member_json(dir: &Dir, t: &Team, user: u32, owner: bool) -> Value {
    let u = &dir.users[user as usize];
    let mut roles: Vec<&str> = Vec::new();
    if owner {
        roles.push("owner");
    }
    if u.user_type == UserType::Guest {
        roles.push("guest");
    }
    json!({
        "@odata.type": "#microsoft.graph.aadUserConversationMember",
        "id": membership_id(&t.id, &u.id),
        "roles": roles,
        "displayName": u.display_name,
        "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z",
        "userId": u.id,
        "email": u.mail,
        "tenantId": dir.tenant_id,
    })
}

pub(super) fn find_team(dir: &Dir, id: &str) -> Result<u32, GraphError> {
    dir.find_team(id, false).ok_or_else(|| {
        GraphError::not_found("NotFound", format!("No team found with Group Id {id}"))
    })
}

/// Reading a team: members, Teams/Global Administrators and app-only tokens.
pub(super) fn check_team_read(dir: &Dir, caller: &Caller, ti: u32) -> Result<(), GraphError> {
    let Some(user) = caller.user else {
        return Ok(());
    };
    let t = &dir.teams[ti as usize];
    if t.member(user).is_some() || dir.users[user as usize].is_teams_admin() {
        return Ok(());
    }
    Err(GraphError::forbidden(format!(
        "Forbidden: the caller is not a member of team {} and is not a Teams Administrator.",
        t.id
    )))
}

/// Managing a team's members: owners, Teams/Global Administrators and app-only tokens.
fn check_team_manage(dir: &Dir, caller: &Caller, ti: u32) -> Result<(), GraphError> {
    let Some(user) = caller.user else {
        return Ok(());
    };
    let t = &dir.teams[ti as usize];
    if t.member(user).is_some_and(|m| m.owner) || dir.users[user as usize].is_teams_admin() {
        return Ok(());
    }
    Err(GraphError::forbidden(format!(
        "Forbidden: only owners of team {} and Teams Administrators can manage its members.",
        t.id
    )))
}

#[derive(Debug, Serialize, Deserialize)]
struct OffsetToken {
    o: usize,
    t: usize,
}

/// `GET /teams`: every team in the tenant, for any caller with `Team.ReadBasic.All`.
pub(crate) async fn list_teams(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::OtherGet])?;
    caller.require_teams(TEAM_READ_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    let select = q.select();
    let filter = match q.get("$filter") {
        Some(f) => Some(Filter::parse(f, &["displayName", "id", "description"])?),
        None => None,
    };
    let (offset, top) = match q.get("$skiptoken") {
        Some(t) => {
            let tok: OffsetToken = decode_token(t, "$skiptoken")?;
            (tok.o, token_top(tok.t, 999)?)
        }
        None => (0, q.top(100, 999)?),
    };
    // any delegated user with Team.ReadBasic.All lists every team of the tenant (id,
    // displayName, description), including teams it cannot read further: their channels
    // and members answer 403 to a non-member who is not a Teams Administrator
    let dir = world.msteams.dir.read();
    let lit = |t: &Team, p: &str| -> Option<Lit> {
        match p {
            "displayName" => Some(Lit::Str(t.display_name.clone())),
            "id" => Some(Lit::Str(t.id.clone())),
            "description" => Some(Lit::Str(t.description.clone())),
            _ => None,
        }
    };
    let matching: Vec<usize> = dir
        .teams
        .iter()
        .enumerate()
        .filter(|(_, t)| filter.as_ref().is_none_or(|f| f.matches(|p| lit(t, p))))
        .map(|(i, _)| i)
        .collect();
    let end = offset.saturating_add(top).min(matching.len());
    let mut page = Vec::with_capacity(end.saturating_sub(offset));
    for &i in matching.get(offset..end).unwrap_or(&[]) {
        page.push(apply_select(
            team_basic(&dir, &dir.teams[i]),
            &select,
            TEAM_PROPS,
            "team",
        )?);
    }
    let next = (end < matching.len()).then(|| {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(s) = q.get("$select") {
            params.push(("$select", s.to_owned()));
        }
        if let Some(f) = q.get("$filter") {
            params.push(("$filter", f.to_owned()));
        }
        params.push(("$top", top.to_string()));
        params.push(("$skiptoken", encode_token(&OffsetToken { o: end, t: top })));
        graph_link(&world, "/teams", &params)
    });
    Ok(ok_json(collection("teams", page, next)))
}

/// `GET /me/joinedTeams`.
pub(crate) async fn joined_teams(State(world): State<SharedWorld>, headers: HeaderMap) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::GetTeamOrChannel])?;
    let user = caller.me()?;
    caller.require_teams(TEAM_READ_PERMS)?;
    let dir = world.msteams.dir.read();
    let value: Vec<Value> = dir
        .joined_teams(user)
        .into_iter()
        .map(|ti| {
            let t = &dir.teams[ti as usize];
            json!({
                "id": t.id,
                "createdDateTime": null,
                "displayName": t.display_name,
                "description": t.description,
                "internalId": null,
                "classification": null,
                "specialization": null,
                "visibility": null,
                "webUrl": null,
                "isArchived": false,
                "tenantId": dir.tenant_id,
                "isMembershipLimitedToOwners": null,
            })
        })
        .collect();
    Ok(ok_json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(team)",
        "@odata.count": value.len(),
        "value": value,
    })))
}

/// `GET /teams/{id}`.
pub(crate) async fn get_team(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path(team): Path<String>,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(
        &world,
        &caller,
        &[Limit::GetTeamOrChannel, Limit::Team(team.clone())],
    )?;
    caller.require_teams(TEAM_READ_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    let dir = world.msteams.dir.read();
    let ti = find_team(&dir, &team)?;
    check_team_read(&dir, &caller, ti)?;
    let mut known: Vec<&str> = TEAM_PROPS.to_vec();
    known.extend([
        "memberSettings",
        "guestSettings",
        "messagingSettings",
        "funSettings",
        "discoverySettings",
        "summary",
    ]);
    let mut v = apply_select(
        team_full(&dir, &dir.teams[ti as usize]),
        &q.select(),
        &known,
        "team",
    )?;
    v["@odata.context"] =
        Value::String("https://graph.microsoft.com/v1.0/$metadata#teams/$entity".into());
    Ok(ok_json(v))
}

pub(super) fn channel_visible(dir: &Dir, caller: &Caller, c: &Channel) -> bool {
    match caller.user {
        None => true,
        Some(u) => {
            c.membership_type == MembershipType::Standard
                || c.has_member(u)
                || dir.users[u as usize].is_teams_admin()
        }
    }
}

/// `GET /teams/{id}/channels`: standard channels, plus private/shared ones the caller is a
/// member of (all of them for Teams Administrators and app-only tokens).
pub(crate) async fn list_channels(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path(team): Path<String>,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(
        &world,
        &caller,
        &[Limit::GetMembersOrChannels, Limit::Team(team.clone())],
    )?;
    caller.require_teams(CHANNEL_READ_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    let filter = match q.get("$filter") {
        Some(f) => Some(Filter::parse(f, &["membershipType", "displayName"])?),
        None => None,
    };
    let dir = world.msteams.dir.read();
    let ti = find_team(&dir, &team)?;
    check_team_read(&dir, &caller, ti)?;
    let t = &dir.teams[ti as usize];
    let select = q.select();
    let known = [
        "id",
        "createdDateTime",
        "displayName",
        "description",
        "isFavoriteByDefault",
        "email",
        "tenantId",
        "webUrl",
        "membershipType",
        "isArchived",
    ];
    let mut value = Vec::new();
    for c in t
        .channels
        .iter()
        .filter(|c| channel_visible(&dir, &caller, c))
    {
        if let Some(f) = &filter {
            let ok = f.matches(|p| match p {
                "membershipType" => Some(Lit::Str(c.membership_type.as_str().to_owned())),
                "displayName" => Some(Lit::Str(c.display_name.clone())),
                _ => None,
            });
            if !ok {
                continue;
            }
        }
        value.push(apply_select(
            channel_json(&dir, t, c),
            &select,
            &known,
            "channel",
        )?);
    }
    Ok(ok_json(json!({
        "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#teams('{}')/channels", t.id),
        "@odata.count": value.len(),
        "value": value,
    })))
}

/// `GET /teams/{id}/channels/{channel-id}`.
pub(crate) async fn get_channel(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, channel)): Path<(String, String)>,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(
        &world,
        &caller,
        &[Limit::GetTeamOrChannel, Limit::Channel(channel.clone())],
    )?;
    caller.require_teams(CHANNEL_READ_PERMS)?;
    let dir = world.msteams.dir.read();
    let ti = find_team(&dir, &team)?;
    check_team_read(&dir, &caller, ti)?;
    let ci = dir.find_channel(ti, &channel, false).ok_or_else(|| {
        GraphError::not_found(
            "NotFound",
            format!("Channel {channel} not found in team {team}."),
        )
    })?;
    let t = &dir.teams[ti as usize];
    let c = &t.channels[ci as usize];
    if !channel_visible(&dir, &caller, c) {
        return Err(GraphError::forbidden(format!(
            "Forbidden: the caller is not a member of the {} channel {}.",
            c.membership_type.as_str(),
            c.id
        )));
    }
    let mut v = channel_json(&dir, t, c);
    v["@odata.context"] = Value::String(format!(
        "https://graph.microsoft.com/v1.0/$metadata#teams('{}')/channels/$entity",
        t.id
    ));
    Ok(ok_json(v))
}

/// `GET /teams/{id}/channels/{id}/members`: a private or shared channel's own members; a
/// standard channel's members are the team's. `$top` (default 100, max 999), paged.
pub(crate) async fn list_channel_members(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, channel)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(
        &world,
        &caller,
        &[Limit::GetMembersOrChannels, Limit::Channel(channel.clone())],
    )?;
    caller.require_teams(MEMBER_READ_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    let (offset, top) = match q.get("$skiptoken") {
        Some(t) => {
            let tok: OffsetToken = decode_token(t, "$skiptoken")?;
            (tok.o, token_top(tok.t, 999)?)
        }
        None => (0, q.top(100, 999)?),
    };
    let dir = world.msteams.dir.read();
    let ti = find_team(&dir, &team)?;
    check_team_read(&dir, &caller, ti)?;
    let ci = dir.find_channel(ti, &channel, false).ok_or_else(|| {
        GraphError::not_found(
            "NotFound",
            format!("Channel {channel} not found in team {team}."),
        )
    })?;
    let t = &dir.teams[ti as usize];
    let c = &t.channels[ci as usize];
    if !channel_visible(&dir, &caller, c) {
        return Err(GraphError::forbidden(format!(
            "Forbidden: the caller is not a member of the {} channel {}.",
            c.membership_type.as_str(),
            c.id
        )));
    }
    let all: Vec<(u32, bool)> = if c.membership_type == MembershipType::Standard {
        t.members.iter().map(|m| (m.user, m.owner)).collect()
    } else {
        c.members.clone()
    };
    let end = offset.saturating_add(top).min(all.len());
    let page: Vec<Value> = all
        .get(offset..end)
        .unwrap_or(&[])
        .iter()
        .map(|(u, owner)| member_json(&dir, t, *u, *owner))
        .collect();
    let next = (end < all.len()).then(|| {
        graph_link(
            &world,
            &format!("/teams/{}/channels/{}/members", t.id, c.id),
            &[
                ("$top", top.to_string()),
                ("$skiptoken", encode_token(&OffsetToken { o: end, t: top })),
            ],
        )
    });
    Ok(ok_json(collection(
        &format!("teams('{}')/channels('{}')/members", t.id, c.id),
        page,
        next,
    )))
}

/// `GET /teams/{id}/members`: `$top` (default 100, max 999), paged.
pub(crate) async fn list_members(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path(team): Path<String>,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(
        &world,
        &caller,
        &[Limit::GetMembersOrChannels, Limit::Team(team.clone())],
    )?;
    caller.require_teams(MEMBER_READ_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    let (offset, top) = match q.get("$skiptoken") {
        Some(t) => {
            let tok: OffsetToken = decode_token(t, "$skiptoken")?;
            (tok.o, token_top(tok.t, 999)?)
        }
        None => (0, q.top(100, 999)?),
    };
    let dir = world.msteams.dir.read();
    let ti = find_team(&dir, &team)?;
    check_team_read(&dir, &caller, ti)?;
    let t = &dir.teams[ti as usize];
    let end = offset.saturating_add(top).min(t.members.len());
    let page: Vec<Value> = t
        .members
        .get(offset..end)
        .unwrap_or(&[])
        .iter()
        .map(|m| member_json(&dir, t, m.user, m.owner))
        .collect();
    let next = (end < t.members.len()).then(|| {
        graph_link(
            &world,
            &format!("/teams/{}/members", t.id),
            &[
                ("$top", top.to_string()),
                ("$skiptoken", encode_token(&OffsetToken { o: end, t: top })),
            ],
        )
    });
    Ok(ok_json(collection(
        &format!("teams('{}')/members", t.id),
        page,
        next,
    )))
}

/// `GET /teams/{id}/members/{membership-id}`.
pub(crate) async fn get_member(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, mid)): Path<(String, String)>,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(
        &world,
        &caller,
        &[Limit::GetMembersOrChannels, Limit::Team(team.clone())],
    )?;
    caller.require_teams(MEMBER_READ_PERMS)?;
    let dir = world.msteams.dir.read();
    let ti = find_team(&dir, &team)?;
    check_team_read(&dir, &caller, ti)?;
    let t = &dir.teams[ti as usize];
    let user = member_from_id(&dir, t, &mid)?;
    let m = t.member(user).ok_or_else(|| member_not_found(&mid))?;
    Ok(ok_json(member_json(&dir, t, m.user, m.owner)))
}

fn member_not_found(mid: &str) -> GraphError {
    GraphError::not_found("NotFound", format!("Membership {mid} not found."))
}

fn member_from_id(dir: &Dir, t: &Team, mid: &str) -> Result<u32, GraphError> {
    let (team_id, user_id) = parse_membership_id(mid).ok_or_else(|| member_not_found(mid))?;
    if team_id != t.id {
        return Err(member_not_found(mid));
    }
    dir.find_user(&user_id).ok_or_else(|| member_not_found(mid))
}

#[derive(Debug, Deserialize)]
struct AddMemberReq {
    #[serde(rename = "@odata.type", default)]
    odata_type: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(rename = "user@odata.bind", default)]
    user_bind: Option<String>,
}

/// The user key in `…/users('{key}')` or `…/users/{key}`.
fn bind_key(bind: &str) -> Option<String> {
    let b = bind.trim();
    if let Some(pos) = b.rfind("users('") {
        let rest = &b[pos + "users('".len()..];
        return rest.strip_suffix("')").map(str::to_owned);
    }
    if let Some(pos) = b.rfind("users/") {
        let rest = &b[pos + "users/".len()..];
        if !rest.is_empty() && !rest.contains('/') {
            return Some(rest.to_owned());
        }
    }
    None
}

/// `POST /teams/{id}/members`: adds an `aadUserConversationMember`. Adding someone who is
/// already a member succeeds again (201, the existing membership; `owner` in `roles`
/// promotes).
pub(crate) async fn add_member(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path(team): Path<String>,
    body: axum::body::Bytes,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(
        &world,
        &caller,
        &[Limit::OtherCall, Limit::Team(team.clone())],
    )?;
    caller.require_teams(MEMBER_WRITE_PERMS)?;
    let req: AddMemberReq = parse_body(&body)?;
    if let Some(t) = &req.odata_type {
        if !t
            .trim_start_matches('#')
            .eq_ignore_ascii_case("microsoft.graph.aadUserConversationMember")
        {
            return Err(GraphError::bad_request(format!(
                "Unsupported @odata.type '{t}': use #microsoft.graph.aadUserConversationMember."
            )));
        }
    }
    let bind = req
        .user_bind
        .as_deref()
        .ok_or_else(|| GraphError::bad_request("user@odata.bind is required."))?;
    let key = bind_key(bind).ok_or_else(|| {
        GraphError::bad_request(format!(
            "Invalid user@odata.bind '{bind}': use https://graph.microsoft.com/v1.0/users('{{id}}')."
        ))
    })?;
    let roles = req.roles.unwrap_or_default();
    let mut owner = false;
    for r in &roles {
        match r.to_ascii_lowercase().as_str() {
            "owner" => owner = true,
            "guest" | "member" => {}
            other => {
                return Err(GraphError::bad_request(format!(
                    "Invalid role '{other}': use [] or [\"owner\"]."
                )));
            }
        }
    }
    if owner
        && !caller.has_any(&[
            Perm::TEAMMEMBER_READWRITE_ALL,
            Perm::GROUP_READWRITE_ALL,
            Perm::DIRECTORY_READWRITE_ALL,
        ])
    {
        return Err(GraphError::forbidden(
            "Forbidden: adding an owner needs TeamMember.ReadWrite.All.",
        ));
    }
    let mut dir = world.msteams.dir.write();
    let ti = find_team(&dir, &team)?;
    check_team_manage(&dir, &caller, ti)?;
    let user = dir
        .find_user(&key)
        .filter(|u| dir.users[*u as usize].account_enabled)
        .ok_or_else(|| {
            GraphError::not_found("NotFound", format!("User '{key}' not found or disabled."))
        })?;
    if owner && dir.users[user as usize].user_type == UserType::Guest {
        return Err(GraphError::bad_request("A guest cannot be a team owner."));
    }
    dir.add_member(ti, user, owner);
    let t = &dir.teams[ti as usize];
    let m = t
        .member(user)
        .copied()
        .ok_or_else(|| member_not_found(&key))?;
    let mut v = member_json(&dir, t, m.user, m.owner);
    v["@odata.context"] = Value::String(format!(
        "https://graph.microsoft.com/v1.0/$metadata#teams('{}')/members/$entity",
        t.id
    ));
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

/// `DELETE /teams/{id}/members/{membership-id}` → 204.
pub(crate) async fn remove_member(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, mid)): Path<(String, String)>,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(
        &world,
        &caller,
        &[Limit::OtherCall, Limit::Team(team.clone())],
    )?;
    caller.require_teams(MEMBER_WRITE_PERMS)?;
    let (team_id, user) = {
        let mut dir = world.msteams.dir.write();
        let ti = find_team(&dir, &team)?;
        let user = member_from_id(&dir, &dir.teams[ti as usize], &mid)?;
        if caller.user != Some(user) {
            check_team_manage(&dir, &caller, ti)?;
        }
        let t = &dir.teams[ti as usize];
        let Some(m) = t.member(user) else {
            return Err(member_not_found(&mid));
        };
        if m.owner && t.members.iter().filter(|m| m.owner).count() == 1 && t.members.len() > 1 {
            return Err(GraphError::bad_request(
                "The last owner of a team cannot be removed while other members remain.",
            ));
        }
        dir.remove_member(ti, user);
        (dir.teams[ti as usize].id.clone(), user)
    };
    on_member_removed(&world, &team_id, user);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds() {
        assert_eq!(
            bind_key("https://graph.microsoft.com/v1.0/users('abc')").as_deref(),
            Some("abc")
        );
        assert_eq!(
            bind_key("https://graph.microsoft.com/v1.0/users/x@contoso.com").as_deref(),
            Some("x@contoso.com")
        );
        assert_eq!(
            bind_key("https://graph.microsoft.com/v1.0/groups('x')"),
            None
        );
    }
}
