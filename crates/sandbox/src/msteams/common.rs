//! Shared plumbing of the Graph routes: errors, bearer authentication, permission checks,
//! throttling, OData query parsing, paging tokens and timestamps.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::model::{Perm, perm_names};
use crate::World;
use crate::ratelimit::retry_after_secs;

/// A Graph error response: `{"error":{"code","message","innerError":{…}}}`.
#[derive(Debug)]
pub(crate) struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }
    pub fn denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let rid = uuid::Uuid::new_v4().to_string();
        let body = json!({"error": {
            "code": self.code,
            "message": self.message,
            "innerError": {
                "date": iso_seconds(crate::util::now_unix()),
                "request-id": rid,
                "client-request-id": rid,
            }
        }});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&rid) {
            resp.headers_mut().insert("request-id", v);
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        resp
    }
}

pub(crate) type GResult = Result<Response, GraphError>;

/// Who is calling: the identity behind a valid access token.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The signed-in user (delegated tokens); `None` for app-only tokens.
    pub user: Option<u32>,
    pub client_id: String,
    /// Graph permissions: delegated scopes or application roles.
    pub perms: u32,
    /// When the caller's access token expires (unix seconds).
    pub token_expires_at: u64,
}

impl Caller {
    pub fn app_only(&self) -> bool {
        self.user.is_none()
    }

    pub fn has_any(&self, perms: &[Perm]) -> bool {
        perms.iter().any(|p| self.perms & p.bit() != 0)
    }

    fn scopes_text(&self) -> String {
        let names = perm_names(self.perms);
        if names.is_empty() {
            "<none>".into()
        } else {
            names.join(", ")
        }
    }

    /// Teams-style scope check: 403 `Forbidden` naming the required and present scopes.
    pub fn require_teams(&self, perms: &[Perm]) -> Result<(), GraphError> {
        if self.has_any(perms) {
            return Ok(());
        }
        let need: Vec<&str> = perms.iter().map(|p| p.name()).collect();
        let kind = if self.app_only() { "Roles" } else { "Scopes" };
        Err(GraphError::forbidden(format!(
            "Missing scope permissions on the request. API requires one of '{}'. {kind} on the request '{}'",
            need.join(", "),
            self.scopes_text()
        )))
    }

    /// Directory-style scope check: 403 `Authorization_RequestDenied`.
    pub fn require_dir(&self, perms: &[Perm]) -> Result<(), GraphError> {
        if self.has_any(perms) {
            Ok(())
        } else {
            Err(GraphError::denied())
        }
    }

    /// The signed-in user, or 400 for app-only tokens on `/me` routes.
    pub fn me(&self) -> Result<u32, GraphError> {
        self.user.ok_or_else(|| {
            GraphError::bad_request("/me request is only valid with delegated authentication flow.")
        })
    }
}

/// Validates the bearer token of a Graph request.
pub(crate) fn authenticate(world: &World, headers: &HeaderMap) -> Result<Caller, GraphError> {
    let unauth = |m: &str| {
        GraphError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            m.to_owned(),
        )
    };
    let Some(value) = headers.get("authorization") else {
        return Err(unauth("Access token is empty."));
    };
    let value = value
        .to_str()
        .map_err(|_| unauth("Access token validation failure. Invalid audience."))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() {
        return Err(unauth("Access token is empty."));
    }
    world.msteams.lookup_access_token(token).map_err(|expired| {
        if expired {
            unauth("Lifetime validation failed, the token is expired.")
        } else {
            unauth("Access token validation failure: the token is not valid for this resource.")
        }
    })
}

/// Named rate-limit buckets (limits per app per tenant, before `time_scale`): the current
/// "Microsoft Teams service limits" table of Graph's throttling page. There is no
/// tenant-wide "any Teams call" bucket (the old 15,000 per 10 s row is gone).
#[derive(Debug, Clone)]
pub(crate) enum Limit {
    /// GET of one team or channel (`/teams/{id}`, `/teams/{id}/channels/{id}`) and
    /// `/me/joinedTeams`: 30 per s.
    GetTeamOrChannel,
    /// GET `/teams/{id}/members`, `/teams/{id}/channels`, a channel's members: 60 per s.
    GetMembersOrChannels,
    /// GET of channel messages (list, get, replies, delta): 20 per s.
    GetMessage,
    /// POST channel message or reply: 50 per s.
    PostMessage,
    /// Other GET calls for Teams (`/teams`, `filesFolder`, …): 30 per s.
    OtherGet,
    /// Other Teams calls (members add/remove, message PATCH, softDelete, reactions): 30 per s.
    OtherCall,
    /// Any call on one given team: 4 per s.
    Team(String),
    /// Any call on one given channel: 4 per s.
    Channel(String),
    /// Directory (users, me, memberOf): 3,000 per 10 s.
    Directory,
    /// POST /invitations: 150 per 5 s per tenant.
    Invitations,
    /// Subscriptions: 1,000 per 10 s.
    Subscriptions,
}

impl Limit {
    fn rule(&self, client: &str) -> (String, u32, Duration) {
        let s = Duration::from_secs(1);
        match self {
            Limit::GetTeamOrChannel => (format!("graph:{client}:get-team-or-channel"), 30, s),
            Limit::GetMembersOrChannels => {
                (format!("graph:{client}:get-members-or-channels"), 60, s)
            }
            Limit::GetMessage => (format!("graph:{client}:get-message"), 20, s),
            Limit::PostMessage => (format!("graph:{client}:post-message"), 50, s),
            Limit::OtherGet => (format!("graph:{client}:other-get"), 30, s),
            Limit::OtherCall => (format!("graph:{client}:other-call"), 30, s),
            Limit::Team(t) => (format!("graph:{client}:team:{t}"), 4, s),
            Limit::Channel(c) => (format!("graph:{client}:channel:{c}"), 4, s),
            Limit::Directory => (
                format!("graph:{client}:directory"),
                3_000,
                Duration::from_secs(10),
            ),
            Limit::Invitations => (
                "graph:tenant:invitations".to_owned(),
                150,
                Duration::from_secs(5),
            ),
            Limit::Subscriptions => (
                format!("graph:{client}:subscriptions"),
                1_000,
                Duration::from_secs(10),
            ),
        }
    }
}

/// Takes a token from every bucket, or from none: 429 `TooManyRequests` with `Retry-After`.
pub(crate) fn throttle(world: &World, caller: &Caller, limits: &[Limit]) -> Result<(), GraphError> {
    if !world.limiter.enabled() {
        return Ok(());
    }
    let rules: Vec<(String, u32, Duration)> =
        limits.iter().map(|l| l.rule(&caller.client_id)).collect();
    let refs: Vec<(&str, u32, Duration)> =
        rules.iter().map(|(k, l, p)| (k.as_str(), *l, *p)).collect();
    world.limiter.check_all(&refs).map_err(|wait| {
        let mut e = GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests. Please retry after the time given in the Retry-After header.",
        );
        e.retry_after = Some(retry_after_secs(wait));
        e
    })
}

/// Messages one app may post into one channel per day.
pub(crate) const CHANNEL_DAILY_MESSAGES: u32 = 3_000;

/// Posts of one app into one channel during the current day.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DayCount {
    /// When the day started (ms since the epoch).
    pub started_ms: u64,
    /// Messages posted so far that day.
    pub used: u32,
}

/// The length of the sandbox's day: 86,400 s divided by `time_scale` (a real day at 1).
pub(crate) fn day_ms(world: &World) -> u64 {
    let scale = world.config.time_scale;
    let scale = if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        1.0
    };
    ((86_400_000.0 / scale).round() as u64).max(1)
}

/// Counts one message of `caller`'s app into `channel` against the daily budget (3,000 per
/// app per day per channel, counted even with rate limits off), or answers 429 with a
/// `Retry-After` until the day starts over.
pub(crate) fn take_daily_message(
    world: &World,
    caller: &Caller,
    channel: &str,
) -> Result<(), GraphError> {
    let now = crate::util::now_unix_ms() as u64;
    let day = day_ms(world);
    let mut days = world.msteams.daily.lock();
    let d = days
        .entry((caller.client_id.clone(), channel.to_owned()))
        .or_insert(DayCount {
            started_ms: now,
            used: 0,
        });
    if now.saturating_sub(d.started_ms) >= day {
        *d = DayCount {
            started_ms: now,
            used: 0,
        };
    }
    if d.used >= CHANNEL_DAILY_MESSAGES {
        let left = (d.started_ms + day).saturating_sub(now);
        let mut e = GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            format!(
                "This app has posted {CHANNEL_DAILY_MESSAGES} messages to this channel today, the daily limit. Retry after the time given in the Retry-After header."
            ),
        );
        e.retry_after = Some(retry_after_secs(Duration::from_millis(left)));
        return Err(e);
    }
    d.used += 1;
    Ok(())
}

/// Parsed OData query options (`$top` and `top` are both accepted).
#[derive(Debug, Default, Clone)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, GraphError> {
        let pairs: Vec<(String, String)> = match raw {
            None | Some("") => Vec::new(),
            Some(r) => serde_urlencoded::from_str(r)
                .map_err(|_| GraphError::bad_request("Invalid query string."))?,
        };
        Ok(Query { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let bare = name.trim_start_matches('$');
        self.pairs
            .iter()
            .find(|(k, _)| {
                let k = k.trim_start_matches('$');
                k.eq_ignore_ascii_case(bare)
            })
            .map(|(_, v)| v.as_str())
    }

    /// `$top`: default when absent, 400 when not a number in 1..=max.
    pub fn top(&self, default: usize, max: usize) -> Result<usize, GraphError> {
        match self.get("$top") {
            None => Ok(default),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(GraphError::bad_request(format!(
                    "Invalid value '{v}' for query option $top: it must be an integer between 1 and {max}."
                ))),
            },
        }
    }

    /// `$select` as a list of property names (empty when absent).
    pub fn select(&self) -> Vec<String> {
        self.get("$select")
            .map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Projects `obj` onto `$select` (every property when `select` is empty). Unknown properties
/// give 400 as Graph does.
pub(crate) fn apply_select(
    obj: Value,
    select: &[String],
    known: &[&str],
    type_name: &str,
) -> Result<Value, GraphError> {
    if select.is_empty() {
        return Ok(obj);
    }
    let Value::Object(map) = obj else {
        return Ok(obj);
    };
    let mut out = serde_json::Map::new();
    for p in select {
        let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(p)) else {
            return Err(GraphError::bad_request(format!(
                "Could not find a property named '{p}' on type 'microsoft.graph.{type_name}'."
            )));
        };
        out.insert((*k).to_owned(), map.get(*k).cloned().unwrap_or(Value::Null));
    }
    Ok(Value::Object(out))
}

/// Encodes a paging state as an opaque `$skiptoken`.
pub(crate) fn encode_token<T: Serialize>(state: &T) -> String {
    let raw = serde_json::to_vec(state).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a `$skiptoken` / `$deltatoken`; 400 when it is not one of ours.
pub(crate) fn decode_token<T: DeserializeOwned>(token: &str, what: &str) -> Result<T, GraphError> {
    URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| GraphError::bad_request(format!("The {what} is invalid or expired.")))
}

/// A page size carried in a paging token: 400 unless within 1..=max.
pub(crate) fn token_top(t: usize, max: usize) -> Result<usize, GraphError> {
    if (1..=max).contains(&t) {
        Ok(t)
    } else {
        Err(GraphError::bad_request(
            "The $skiptoken is invalid or expired.",
        ))
    }
}

/// Builds an absolute Graph URL `{base}/graph/v1.0{path}?k=v&…`, keeping `$` literal in keys.
pub(crate) fn graph_link(world: &World, path: &str, params: &[(&str, String)]) -> String {
    let mut url = format!("{}/graph/v1.0{}", world.base_url, encode_path(path));
    let mut first = true;
    for (k, v) in params {
        url.push(if first { '?' } else { '&' });
        first = false;
        url.push_str(k);
        url.push('=');
        url.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
    }
    url
}

/// Percent-encodes what must be encoded in a path (keeps `/`, `:`, `@`, `'`, `(`, `)`).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'/'
            | b':'
            | b'@'
            | b'\''
            | b'('
            | b')'
            | b'!'
            | b'$'
            | b','
            | b';'
            | b'='
            | b'+' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A collection response `{"@odata.context", "value", "@odata.nextLink"?}`.
pub(crate) fn collection(context: &str, value: Vec<Value>, next: Option<String>) -> Value {
    let mut obj = json!({
        "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#{context}"),
        "value": value,
    });
    if let Some(n) = next {
        obj["@odata.nextLink"] = Value::String(n);
    }
    obj
}

/// Parses a JSON request body; 400 `BadRequest` when it is not a JSON object of the shape.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, GraphError> {
    if body.is_empty() {
        return Err(GraphError::bad_request(
            "Empty Payload. JSON content expected.",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| GraphError::bad_request(format!("Unable to read JSON request payload: {e}")))
}

/// `2024-05-01T12:00:00.123Z`.
pub(crate) fn iso_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let frac = ms % 1000;
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            frac
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".into(),
    }
}

/// `2024-05-01T12:00:00Z`.
pub(crate) fn iso_seconds(secs: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs as i64) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "1970-01-01T00:00:00Z".into(),
    }
}

/// `2024-05-01T12:00:00.0000000Z` (the 7-digit form subscriptions use).
pub(crate) fn iso_7(ms: u64) -> String {
    let s = iso_ms(ms);
    // "…:SS.mmmZ" → "…:SS.mmm0000Z"
    format!("{}0000Z", &s[..s.len() - 1])
}

/// Parses an ISO 8601 / RFC 3339 timestamp to ms since the epoch.
pub(crate) fn parse_iso(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).ok()
}

/// JSON 200 response.
pub(crate) fn ok_json(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(iso_ms(1_606_515_483_514), "2020-11-27T22:18:03.514Z");
        assert_eq!(iso_7(1_606_515_483_514), "2020-11-27T22:18:03.5140000Z");
        assert_eq!(
            parse_iso("2020-11-27T22:18:03.514Z"),
            Some(1_606_515_483_514)
        );
        assert_eq!(
            parse_iso("2020-11-27T22:18:03.5140000Z"),
            Some(1_606_515_483_514)
        );
        assert_eq!(parse_iso("yesterday"), None);
    }

    #[test]
    fn query_options() {
        let q = Query::parse(Some("$top=5&%24select=id,displayName&top=7")).unwrap();
        assert_eq!(q.top(100, 999).unwrap(), 5);
        assert_eq!(q.select(), vec!["id", "displayName"]);
        let q = Query::parse(Some("$top=0")).unwrap();
        assert!(q.top(100, 999).is_err());
        let q = Query::parse(Some("$top=1000")).unwrap();
        assert!(q.top(100, 999).is_err());
    }

    #[test]
    fn tokens_round_trip() {
        let t = encode_token(&(3u32, "x"));
        let back: (u32, String) = decode_token(&t, "$skiptoken").unwrap();
        assert_eq!(back, (3, "x".to_owned()));
        assert!(decode_token::<(u32, String)>("garbage!", "$skiptoken").is_err());
    }
}
