//! Directory routes: `/me`, `/me/memberOf`, `/me/transitiveMemberOf`, `/users`,
//! `/users/{id}`, `/invitations`; and the small `$filter` language they accept.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::common::{
    GResult, GraphError, Limit, Query, apply_select, authenticate, collection, decode_token,
    encode_token, graph_link, iso_seconds, ok_json, parse_body, throttle, token_top,
};
use super::model::{Perm, Role, User, UserType};
use super::state::Dir;
use crate::SharedWorld;

// ---------------------------------------------------------------------------------------
// $filter
// ---------------------------------------------------------------------------------------

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Str(String),
    Bool(bool),
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Lit),
    Ne(Lit),
    StartsWith(String),
    In(Vec<Lit>),
}

/// A conjunction of simple clauses: `p eq 'v'`, `p ne 'v'`, `p eq true`,
/// `startswith(p,'v')`, `p in ('a','b')`.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    clauses: Vec<(String, Op)>,
}

fn unsupported(f: &str) -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
        format!(
            "Unsupported Query: '{f}'. The sandbox supports eq, ne, in and startswith() joined by 'and'."
        ),
    )
}

/// Splits on ` and ` outside quotes.
fn split_and(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            in_q = !in_q;
        }
        if !in_q && c == ' ' {
            let rest: String = chars[i..chars.len().min(i + 5)].iter().collect();
            if rest.eq_ignore_ascii_case(" and ") {
                out.push(std::mem::take(&mut cur));
                i += 5;
                continue;
            }
        }
        cur.push(c);
        i += 1;
    }
    out.push(cur);
    out
}

fn parse_lit(s: &str) -> Option<Lit> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Some(Lit::Str(inner.replace("''", "'")));
    }
    match s.to_ascii_lowercase().as_str() {
        "true" => Some(Lit::Bool(true)),
        "false" => Some(Lit::Bool(false)),
        _ => None,
    }
}

impl Filter {
    pub fn parse(f: &str, props: &[&str]) -> Result<Filter, GraphError> {
        let mut clauses = Vec::new();
        let prop = |p: &str| -> Result<String, GraphError> {
            props
                .iter()
                .find(|k| k.eq_ignore_ascii_case(p.trim()))
                .map(|k| (*k).to_owned())
                .ok_or_else(|| unsupported(f))
        };
        for part in split_and(f.trim()) {
            let part = part.trim();
            let lower = part.to_ascii_lowercase();
            if lower.starts_with("startswith(") && part.ends_with(')') {
                let inner = &part["startswith(".len()..part.len() - 1];
                let (p, v) = inner.split_once(',').ok_or_else(|| unsupported(f))?;
                let Some(Lit::Str(v)) = parse_lit(v) else {
                    return Err(unsupported(f));
                };
                clauses.push((prop(p)?, Op::StartsWith(v)));
                continue;
            }
            let mut it = part.splitn(3, ' ');
            let (Some(p), Some(op), Some(v)) = (it.next(), it.next(), it.next()) else {
                return Err(unsupported(f));
            };
            let op = match op.to_ascii_lowercase().as_str() {
                "eq" => Op::Eq(parse_lit(v).ok_or_else(|| unsupported(f))?),
                "ne" => Op::Ne(parse_lit(v).ok_or_else(|| unsupported(f))?),
                "in" => {
                    let inner = v
                        .trim()
                        .strip_prefix('(')
                        .and_then(|r| r.strip_suffix(')'))
                        .ok_or_else(|| unsupported(f))?;
                    let lits: Option<Vec<Lit>> = inner.split(',').map(parse_lit).collect();
                    Op::In(lits.ok_or_else(|| unsupported(f))?)
                }
                _ => return Err(unsupported(f)),
            };
            clauses.push((prop(p)?, op));
        }
        Ok(Filter { clauses })
    }

    /// Evaluates against `get(property)` (None: null).
    pub fn matches(&self, get: impl Fn(&str) -> Option<Lit>) -> bool {
        self.clauses.iter().all(|(p, op)| {
            let v = get(p);
            let eq = |a: &Option<Lit>, b: &Lit| match (a, b) {
                (Some(Lit::Str(x)), Lit::Str(y)) => x.eq_ignore_ascii_case(y),
                (Some(Lit::Bool(x)), Lit::Bool(y)) => x == y,
                _ => false,
            };
            match op {
                Op::Eq(l) => eq(&v, l),
                Op::Ne(l) => !eq(&v, l),
                Op::In(ls) => ls.iter().any(|l| eq(&v, l)),
                Op::StartsWith(prefix) => match &v {
                    Some(Lit::Str(s)) => s
                        .to_ascii_lowercase()
                        .starts_with(&prefix.to_ascii_lowercase()),
                    _ => false,
                },
            }
        })
    }
}

// ---------------------------------------------------------------------------------------
// User JSON
// ---------------------------------------------------------------------------------------

/// Every user property the sandbox serves (valid in `$select`).
const USER_PROPS: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "jobTitle",
    "businessPhones",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "userType",
    "accountEnabled",
    "createdDateTime",
    "otherMails",
    "externalUserState",
    "creationType",
    "department",
    "companyName",
];

/// The properties Graph v1.0 returns without `$select` (no `userType`/`accountEnabled`).
const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

const USER_FILTER_PROPS: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "userType",
    "accountEnabled",
];

fn user_full(u: &User) -> Value {
    json!({
        "id": u.id,
        "displayName": u.display_name,
        "givenName": u.given_name,
        "surname": u.surname,
        "mail": u.mail,
        "userPrincipalName": u.upn,
        "jobTitle": u.job_title,
        "businessPhones": [],
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": if u.user_type == UserType::Member { Value::from("en-US") } else { Value::Null },
        "userType": u.user_type.as_str(),
        "accountEnabled": u.account_enabled,
        "createdDateTime": iso_seconds(u.created_ms / 1000),
        "otherMails": [],
        "externalUserState": if u.user_type == UserType::Guest { Value::from("PendingAcceptance") } else { Value::Null },
        "creationType": if u.user_type == UserType::Guest { Value::from("Invitation") } else { Value::Null },
        "department": null,
        "companyName": null,
    })
}

fn user_json(u: &User, select: &[String]) -> Result<Value, GraphError> {
    let full = user_full(u);
    if select.is_empty() {
        let mut out = serde_json::Map::new();
        for k in USER_DEFAULT {
            out.insert(
                (*k).to_owned(),
                full.get(*k).cloned().unwrap_or(Value::Null),
            );
        }
        return Ok(Value::Object(out));
    }
    apply_select(full, select, USER_PROPS, "user")
}

fn user_lit(u: &User, p: &str) -> Option<Lit> {
    match p {
        "id" => Some(Lit::Str(u.id.clone())),
        "displayName" => Some(Lit::Str(u.display_name.clone())),
        "givenName" => u.given_name.clone().map(Lit::Str),
        "surname" => u.surname.clone().map(Lit::Str),
        "mail" => u.mail.clone().map(Lit::Str),
        "userPrincipalName" => Some(Lit::Str(u.upn.clone())),
        "userType" => Some(Lit::Str(u.user_type.as_str().to_owned())),
        "accountEnabled" => Some(Lit::Bool(u.account_enabled)),
        _ => None,
    }
}

const USER_READ_PERMS: &[Perm] = &[
    Perm::USER_READBASIC_ALL,
    Perm::USER_READ_ALL,
    Perm::USER_READWRITE_ALL,
    Perm::DIRECTORY_READ_ALL,
    Perm::DIRECTORY_READWRITE_ALL,
];

const ME_PERMS: &[Perm] = &[
    Perm::USER_READ,
    Perm::USER_READWRITE,
    Perm::USER_READBASIC_ALL,
    Perm::USER_READ_ALL,
    Perm::USER_READWRITE_ALL,
    Perm::DIRECTORY_READ_ALL,
    Perm::DIRECTORY_READWRITE_ALL,
];

const MEMBEROF_PERMS: &[Perm] = &[
    Perm::USER_READ,
    Perm::USER_READWRITE,
    Perm::USER_READBASIC_ALL,
    Perm::USER_READ_ALL,
    Perm::USER_READWRITE_ALL,
    Perm::DIRECTORY_READ_ALL,
    Perm::DIRECTORY_READWRITE_ALL,
    Perm::GROUPMEMBER_READ_ALL,
    Perm::GROUP_READ_ALL,
];

// ---------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------

/// `GET /me`.
pub(crate) async fn me(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Directory])?;
    let user = caller.me()?;
    caller.require_dir(ME_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    let dir = world.msteams.dir.read();
    let mut v = user_json(&dir.users[user as usize], &q.select())?;
    v["@odata.context"] =
        Value::String("https://graph.microsoft.com/v1.0/$metadata#users/$entity".into());
    Ok(ok_json(v))
}

#[derive(Debug, Serialize, Deserialize)]
struct UsersToken {
    o: usize,
    t: usize,
}

/// `GET /users`: `$select`, `$top` (default 100, max 999), `$filter`, `@odata.nextLink`.
pub(crate) async fn list_users(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Directory])?;
    caller.require_dir(USER_READ_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    if q.get("$skip").is_some() {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "The query specified in the URI is not valid. Query option 'Skip' is not allowed. To allow it, set the 'AllowedQueryOptions' property on EnableQueryAttribute or QueryValidationSettings.",
        ));
    }
    let select = q.select();
    let filter = match q.get("$filter") {
        Some(f) => Some(Filter::parse(f, USER_FILTER_PROPS)?),
        None => None,
    };
    let (offset, top) = match q.get("$skiptoken") {
        Some(t) => {
            let tok: UsersToken = decode_token(t, "$skiptoken")?;
            (tok.o, token_top(tok.t, 999)?)
        }
        None => (0, q.top(100, 999)?),
    };
    let dir = world.msteams.dir.read();
    let mut page = Vec::with_capacity(top);
    let mut next_offset = None;
    let mut i = offset;
    while i < dir.users.len() {
        let u = &dir.users[i];
        i += 1;
        if filter
            .as_ref()
            .is_some_and(|f| !f.matches(|p| user_lit(u, p)))
        {
            continue;
        }
        page.push(user_json(u, &select)?);
        if page.len() == top {
            // more only if another match exists
            let more = dir.users[i..].iter().any(|u| {
                filter
                    .as_ref()
                    .is_none_or(|f| f.matches(|p| user_lit(u, p)))
            });
            if more {
                next_offset = Some(i);
            }
            break;
        }
    }
    let next = next_offset.map(|o| {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(s) = q.get("$select") {
            params.push(("$select", s.to_owned()));
        }
        if let Some(f) = q.get("$filter") {
            params.push(("$filter", f.to_owned()));
        }
        params.push(("$top", top.to_string()));
        params.push(("$skiptoken", encode_token(&UsersToken { o, t: top })));
        graph_link(&world, "/users", &params)
    });
    let ctx = if select.is_empty() {
        "users".to_owned()
    } else {
        format!("users({})", select.join(","))
    };
    Ok(ok_json(collection(&ctx, page, next)))
}

/// `GET /users/{id | userPrincipalName}`.
pub(crate) async fn get_user(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Directory])?;
    let q = Query::parse(raw.as_deref())?;
    let dir = world.msteams.dir.read();
    let ix = dir.find_user(&id).filter(|ix| {
        // by id or UPN only (mail is not a key in Graph)
        let u = &dir.users[*ix as usize];
        u.id == id.to_ascii_lowercase() || u.upn.eq_ignore_ascii_case(&id)
    });
    let Some(ix) = ix else {
        caller.require_dir(USER_READ_PERMS)?;
        return Err(GraphError::not_found(
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        ));
    };
    if caller.user != Some(ix) {
        caller.require_dir(USER_READ_PERMS)?;
    } else {
        caller.require_dir(ME_PERMS)?;
    }
    let mut v = user_json(&dir.users[ix as usize], &q.select())?;
    v["@odata.context"] =
        Value::String("https://graph.microsoft.com/v1.0/$metadata#users/$entity".into());
    Ok(ok_json(v))
}

/// Which directory objects a memberOf listing yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Cast {
    All,
    Roles,
    Groups,
}

fn group_json(
    id: &str,
    name: &str,
    description: &str,
    mail: Option<&str>,
    team: bool,
    security: bool,
) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.group",
        "id": id,
        "deletedDateTime": null,
        "displayName": name,
        "description": description,
        "mail": mail,
        "mailEnabled": mail.is_some(),
        "securityEnabled": security,
        "groupTypes": if security { Vec::<&str>::new() } else { vec!["Unified"] },
        "resourceProvisioningOptions": if team { vec!["Team"] } else { Vec::new() },
        "visibility": if security { Value::Null } else { Value::from("Private") },
    })
}

/// Every object `user` is a member of: the All Company group, team groups, directory roles
/// (and, transitively, the parent of All Company).
fn member_of(
    dir: &Dir,
    user: u32,
    transitive: bool,
    show_templates: bool,
    cast: Cast,
) -> Vec<Value> {
    let u = &dir.users[user as usize];
    let mut out = Vec::new();
    if cast != Cast::Roles {
        if u.user_type == UserType::Member {
            out.push(group_json(
                &dir.all_company_group,
                "All Company",
                "Everyone in Contoso.",
                Some("allcompany@contoso.com"),
                false,
                false,
            ));
            if transitive {
                out.push(group_json(
                    &dir.everyone_group,
                    "Contoso Everyone",
                    "Security group containing All Company.",
                    None,
                    false,
                    true,
                ));
            }
        }
        for t in &dir.teams {
            if t.member(user).is_some() {
                let nick: String = t
                    .display_name
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect();
                out.push(group_json(
                    &t.id,
                    &t.display_name,
                    &t.description,
                    Some(&format!("{nick}@contoso.com")),
                    true,
                    false,
                ));
            }
        }
    }
    if cast != Cast::Groups {
        for r in Role::ALL {
            if u.has_role(r) {
                out.push(json!({
                    "@odata.type": "#microsoft.graph.directoryRole",
                    "id": dir.role_ids[r.0 as usize],
                    "deletedDateTime": null,
                    "description": r.description(),
                    "displayName": r.display_name(),
                    "roleTemplateId": if show_templates { Value::from(r.template_id()) } else { Value::Null },
                }));
            }
        }
    }
    out
}

#[derive(Debug, Serialize, Deserialize)]
struct MemberOfToken {
    o: usize,
    t: usize,
}

async fn member_of_route(
    world: SharedWorld,
    headers: HeaderMap,
    raw: Option<String>,
    transitive: bool,
    cast: Cast,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Directory])?;
    let user = caller.me()?;
    caller.require_dir(MEMBEROF_PERMS)?;
    let q = Query::parse(raw.as_deref())?;
    let (offset, top) = match q.get("$skiptoken") {
        Some(t) => {
            let tok: MemberOfToken = decode_token(t, "$skiptoken")?;
            (tok.o, token_top(tok.t, 999)?)
        }
        None => (0, q.top(100, 999)?),
    };
    let select = q.select();
    let show = caller.has_any(&[
        Perm::ROLEMANAGEMENT_READ_DIRECTORY,
        Perm::DIRECTORY_READ_ALL,
        Perm::DIRECTORY_READWRITE_ALL,
    ]);
    let dir = world.msteams.dir.read();
    let all = member_of(&dir, user, transitive, show, cast);
    let end = offset.saturating_add(top).min(all.len());
    let page: Vec<Value> = all
        .get(offset..end)
        .unwrap_or(&[])
        .iter()
        .map(|v| {
            if select.is_empty() {
                return v.clone();
            }
            let mut o = serde_json::Map::new();
            o.insert("@odata.type".into(), v["@odata.type"].clone());
            for p in &select {
                if let Some(x) = v.get(p.as_str()) {
                    o.insert(p.clone(), x.clone());
                }
            }
            Value::Object(o)
        })
        .collect();
    let segment = if transitive {
        "transitiveMemberOf"
    } else {
        "memberOf"
    };
    let path = match cast {
        Cast::All => format!("/me/{segment}"),
        Cast::Roles => format!("/me/{segment}/microsoft.graph.directoryRole"),
        Cast::Groups => format!("/me/{segment}/microsoft.graph.group"),
    };
    let next = (end < all.len()).then(|| {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(s) = q.get("$select") {
            params.push(("$select", s.to_owned()));
        }
        params.push(("$top", top.to_string()));
        params.push((
            "$skiptoken",
            encode_token(&MemberOfToken { o: end, t: top }),
        ));
        graph_link(&world, &path, &params)
    });
    Ok(ok_json(collection("directoryObjects", page, next)))
}

macro_rules! member_of_routes {
    ($($name:ident => $transitive:expr, $cast:expr;)*) => {$(
        pub(crate) async fn $name(
            State(world): State<SharedWorld>,
            headers: HeaderMap,
            RawQuery(raw): RawQuery,
        ) -> GResult {
            member_of_route(world, headers, raw, $transitive, $cast).await
        }
    )*};
}

member_of_routes! {
    member_of_all => false, Cast::All;
    member_of_roles => false, Cast::Roles;
    member_of_groups => false, Cast::Groups;
    transitive_all => true, Cast::All;
    transitive_roles => true, Cast::Roles;
    transitive_groups => true, Cast::Groups;
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvitationReq {
    #[serde(default)]
    invited_user_email_address: Option<String>,
    #[serde(default)]
    invite_redirect_url: Option<String>,
    #[serde(default)]
    invited_user_display_name: Option<String>,
    #[serde(default)]
    send_invitation_message: Option<bool>,
    #[serde(default)]
    invited_user_type: Option<String>,
}

fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',')
        && !domain.contains('@')
        && s.len() <= 254
}

/// `POST /invitations`: invites a guest (creates a `Guest` user).
pub(crate) async fn invite(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::Invitations])?;
    caller.require_dir(&[
        Perm::USER_INVITE_ALL,
        Perm::USER_READWRITE_ALL,
        Perm::DIRECTORY_READWRITE_ALL,
    ])?;
    let req: InvitationReq = parse_body(&body)?;
    let email = req
        .invited_user_email_address
        .as_deref()
        .map(str::trim)
        .unwrap_or("");
    if !valid_email(email) {
        return Err(GraphError::bad_request(format!(
            "The invited user email address '{email}' is invalid."
        )));
    }
    let redirect = req.invite_redirect_url.as_deref().unwrap_or("");
    if url::Url::parse(redirect).is_err() {
        return Err(GraphError::bad_request(
            "inviteRedirectUrl is required and must be an absolute URL.",
        ));
    }
    if let Some(t) = &req.invited_user_type {
        if !t.eq_ignore_ascii_case("guest") {
            return Err(GraphError::bad_request(
                "The sandbox only invites users of type Guest.",
            ));
        }
    }
    let mut dir = world.msteams.dir.write();
    if let Some(u) = caller.user {
        let me = &dir.users[u as usize];
        if !(me.has_role(Role::USER_ADMIN) || me.has_role(Role::GLOBAL_ADMIN)) {
            return Err(GraphError::denied());
        }
    }
    let lower = email.to_ascii_lowercase();
    let domain = lower.split_once('@').map(|(_, d)| d).unwrap_or("");
    if domain == dir.domain || domain == dir.custom_domain {
        return Err(GraphError::bad_request(
            "The invited user is a member of this organization: invitations are for external users.",
        ));
    }
    let ix = match dir.find_user(&lower) {
        Some(ix) => {
            if dir.users[ix as usize].user_type == UserType::Member {
                return Err(GraphError::bad_request(
                    "The invited user already exists in the directory as a member.",
                ));
            }
            ix
        }
        None => {
            let ix = dir.users.len() as u32;
            let id = uuid::Uuid::new_v4().to_string();
            let upn = format!("{}#EXT#@{}", lower.replace('@', "_"), dir.domain);
            let display = req
                .invited_user_display_name
                .clone()
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| email.split('@').next().unwrap_or(email).to_owned());
            dir.user_by_id.insert(id.clone(), ix);
            dir.user_by_upn.insert(upn.to_ascii_lowercase(), ix);
            dir.user_by_mail.insert(lower.clone(), ix);
            dir.users.push(User {
                id,
                display_name: display,
                given_name: None,
                surname: None,
                mail: Some(email.to_owned()),
                upn,
                user_type: UserType::Guest,
                account_enabled: true,
                job_title: None,
                password: None,
                roles: 0,
                created_ms: crate::util::now_unix_ms() as u64,
            });
            ix
        }
    };
    let u = &dir.users[ix as usize];
    let inv_id = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#invitations/$entity",
        "id": inv_id,
        "inviteRedeemUrl": format!(
            "https://login.microsoftonline.com/redeem?rd=https%3a%2f%2finvitations.microsoft.com%2fredeem%2f%3ftenant%3d{}%26user%3d{}%26ticket%3d{}",
            dir.tenant_id, u.id, crate::util::random_token(24)
        ),
        "invitedUserDisplayName": u.display_name,
        "invitedUserType": "Guest",
        "invitedUserEmailAddress": email,
        "sendInvitationMessage": req.send_invitation_message.unwrap_or(false),
        "resetRedemption": false,
        "inviteRedirectUrl": redirect,
        "status": "PendingAcceptance",
        "invitedUserMessageInfo": {
            "messageLanguage": null,
            "ccRecipients": [],
            "customizedMessageBody": null,
        },
        "invitedUser": { "id": u.id },
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Option<Lit> {
        Some(Lit::Str(s.to_owned()))
    }

    #[test]
    fn filters() {
        let f = Filter::parse(
            "userType eq 'Guest' and accountEnabled eq true",
            USER_FILTER_PROPS,
        )
        .unwrap();
        assert!(f.matches(|p| match p {
            "userType" => lit("Guest"),
            "accountEnabled" => Some(Lit::Bool(true)),
            _ => None,
        }));
        assert!(!f.matches(|p| match p {
            "userType" => lit("Member"),
            "accountEnabled" => Some(Lit::Bool(true)),
            _ => None,
        }));
        let f = Filter::parse("startswith(displayName,'Tom and')", USER_FILTER_PROPS).unwrap();
        assert!(f.matches(|_| lit("tom and jerry")));
        let f = Filter::parse("mail in ('a@x.com', 'b@x.com')", USER_FILTER_PROPS).unwrap();
        assert!(f.matches(|_| lit("B@x.com")));
        assert!(Filter::parse("jobTitle eq 'x'", USER_FILTER_PROPS).is_err());
        assert!(Filter::parse("displayName gt 'x'", USER_FILTER_PROPS).is_err());
    }

    #[test]
    fn emails() {
        assert!(valid_email("someone@fabrikam.com"));
        assert!(!valid_email("someone"));
        assert!(!valid_email("a b@x.com"));
        assert!(!valid_email("a@x"));
    }
}
