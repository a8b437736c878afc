//! OAuth 2.0 authorization code flow with PKCE against the Microsoft identity platform:
//! the authorization URL, the callback, the code exchange and the refresh (with rotation).
//!
//! Errors never contain tokens, codes or the client secret. A dead grant (`invalid_grant`,
//! `interaction_required`, `consent_required`, `login_required`) is
//! [`ErrorKind::NeedsReauth`]: an administrator must reconnect; retrying cannot help.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchboard_core::{Credentials, Error, ErrorKind, Result};
use time::OffsetDateTime;
use url::Url;

use crate::config::MsTeamsConfig;

/// The Graph resource prefix of fully qualified scopes.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com/";

/// The OpenID Connect scopes requested with every grant.
pub const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

/// The Graph permissions a Teams connection needs (short form).
pub const GRAPH_PERMISSIONS: [&str; 8] = [
    "Team.ReadBasic.All",
    "Channel.ReadBasic.All",
    "TeamMember.ReadWrite.All",
    "User.Read.All",
    "RoleManagement.Read.Directory",
    "ChannelMessage.Send",
    "ChannelMessage.ReadWrite",
    "ChannelMessage.Read.All",
];

/// The delegated Graph permissions an end user grants when linking their own account
/// ("post as me"): `User.Read` to learn who signed in (`/me`), `ChannelMessage.Send` to post
/// and react (`setReaction`/`unsetReaction`), `ChannelMessage.ReadWrite` to edit and delete
/// the messages they posted. Nothing an administrator must consent to.
pub const END_USER_PERMISSIONS: [&str; 3] = [
    "User.Read",
    "ChannelMessage.Send",
    "ChannelMessage.ReadWrite",
];

/// The scope set an end user's "link my account" grant requests: the OpenID scopes (with
/// `offline_access`, so the grant refreshes) plus [`END_USER_PERMISSIONS`] in full form.
pub fn end_user_scopes() -> Vec<String> {
    OIDC_SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .chain(
            END_USER_PERMISSIONS
                .iter()
                .map(|p| format!("{GRAPH_RESOURCE}{p}")),
        )
        .collect()
}

/// Requested so files are uploaded into channels' SharePoint folders; not required (without it
/// files are posted as links).
pub const FILES_PERMISSION: &str = "Files.ReadWrite.All";

/// The extra permission requested when guest sync is on.
pub const GUEST_PERMISSION: &str = "User.Invite.All";

/// The Graph permissions required for a configuration (short form).
pub fn required_permissions(guest_sync: bool) -> Vec<&'static str> {
    let mut v = GRAPH_PERMISSIONS.to_vec();
    if guest_sync {
        v.push(GUEST_PERMISSION);
    }
    v
}

/// The scope set requested from the identity platform: the OpenID scopes plus every needed
/// Graph permission in its full form (`https://graph.microsoft.com/<Permission>`).
pub fn scopes(guest_sync: bool) -> Vec<String> {
    OIDC_SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .chain(
            required_permissions(guest_sync)
                .into_iter()
                .chain([FILES_PERMISSION])
                .map(|p| format!("{GRAPH_RESOURCE}{p}")),
        )
        .collect()
}

/// Strips the Graph resource prefix from a scope: `https://graph.microsoft.com/User.Read.All`
/// → `User.Read.All`.
pub fn short_scope(scope: &str) -> &str {
    // `get` (not indexing): a scope from outside may have a multi-byte character where the
    // prefix would end, and must not panic.
    match (
        scope.get(..GRAPH_RESOURCE.len()),
        scope.get(GRAPH_RESOURCE.len()..),
    ) {
        (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case(GRAPH_RESOURCE) => rest,
        _ => scope,
    }
}

fn random_urlsafe(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A PKCE (RFC 7636) verifier and its S256 challenge.
#[derive(Clone)]
pub struct Pkce {
    verifier: SecretString,
    challenge: String,
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("verifier", &"[REDACTED]")
            .field("challenge", &self.challenge)
            .finish()
    }
}

impl Pkce {
    /// A fresh verifier of 43 characters (32 random bytes, base64url) and its challenge.
    pub fn generate() -> Self {
        let verifier = random_urlsafe(32);
        let challenge = Self::challenge_for(&verifier);
        Pkce {
            verifier: SecretString::from(verifier),
            challenge,
        }
    }

    /// Rebuilds from a stored verifier, checking RFC 7636's alphabet and length (43–128).
    pub fn from_verifier(verifier: SecretString) -> Result<Self> {
        let v = verifier.expose_secret();
        let ok_len = (43..=128).contains(&v.len());
        let ok_chars = v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !ok_len || !ok_chars {
            return Err(Error::invalid(
                "a PKCE verifier must be 43 to 128 characters of [A-Za-z0-9-._~]",
            ));
        }
        let challenge = Self::challenge_for(v);
        Ok(Pkce {
            verifier,
            challenge,
        })
    }

    /// `BASE64URL(SHA256(verifier))` without padding.
    pub fn challenge_for(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    }

    /// The verifier (secret until the code exchange).
    pub fn verifier(&self) -> &SecretString {
        &self.verifier
    }

    /// The S256 challenge sent in the authorization URL.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

/// A started authorization: the URL to send the admin to, and what to keep (bound to the
/// browser session) until the callback.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    /// Where to redirect the browser.
    pub url: Url,
    /// The `state` to check on the callback (single use).
    pub state: String,
    /// The PKCE verifier to send with the code exchange.
    pub pkce: Pkce,
}

/// What the identity platform's callback carried.
#[derive(Debug, Clone)]
pub struct Callback {
    /// The authorization code (secret; single use, about 10 minutes).
    pub code: SecretString,
}

/// Checks the callback query (`?code&state` or `?error&error_description`) against the
/// expected `state` (constant-time). A mismatched or missing state is `InvalidInput` and the
/// code is not returned; an `access_denied` is `Forbidden` (the admin declined).
pub fn parse_callback(query: &str, expected_state: &str) -> Result<Callback> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| Error::invalid(format!("the OAuth callback query is malformed: {e}")))?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let state_ok = match get("state") {
        Some(s) => bool::from(s.as_bytes().ct_eq(expected_state.as_bytes())),
        None => false,
    };
    if !state_ok || expected_state.is_empty() {
        return Err(Error::invalid(
            "the OAuth callback's state does not match this sign-in; start the connection again",
        ));
    }
    if let Some(error) = get("error") {
        let description = get("error_description").map(first_line).unwrap_or_default();
        let kind = if error == "access_denied" || error == "consent_required" {
            ErrorKind::Forbidden
        } else {
            ErrorKind::InvalidInput
        };
        return Err(Error::new(
            kind,
            format!("Microsoft sign-in failed: {error}: {description}"),
        ));
    }
    match get("code") {
        Some(code) if !code.is_empty() => Ok(Callback {
            code: SecretString::from(code.to_owned()),
        }),
        _ => Err(Error::invalid("the OAuth callback carries no code")),
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(300).collect();
    if line.chars().count() > 300 {
        out.push('…');
    }
    out
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, deserialize_with = "de_lenient_u64")]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct TokenErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

fn de_lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// The identity platform client of one app registration.
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    authorize: Url,
    token: Url,
    client_id: String,
    client_secret: SecretString,
    redirect_uri: Url,
    scopes: Vec<String>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_endpoint", &self.token.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish()
    }
}

impl OAuthClient {
    /// A client for the configuration's app registration and scope set.
    pub fn new(config: &MsTeamsConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::upstream("could not build the HTTP client").with_source(e))?;
        Ok(OAuthClient {
            http,
            authorize: config.authorize_endpoint()?,
            token: config.token_endpoint()?,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            redirect_uri: config.redirect_uri.clone(),
            scopes: scopes(config.guest_sync),
        })
    }

    /// The same client requesting (and refreshing with) `scopes` instead (an end user's
    /// grant: [`end_user_scopes`]).
    pub fn with_scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = scopes;
        self
    }

    /// The redirect URI of the app registration.
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// The scopes this client requests.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Starts an authorization: fresh `state` and PKCE verifier, and the URL carrying them.
    pub fn authorization_request(&self, login_hint: Option<&str>) -> AuthorizationRequest {
        let state = random_urlsafe(24);
        let pkce = Pkce::generate();
        let url = self.authorize_url(&state, &pkce, login_hint, None);
        AuthorizationRequest { url, state, pkce }
    }

    /// The authorization URL for a given `state` and PKCE pair (`response_mode=query`,
    /// `code_challenge_method=S256`, the full scope set, optional `login_hint` and `prompt`).
    pub fn authorize_url(
        &self,
        state: &str,
        pkce: &Pkce,
        login_hint: Option<&str>,
        prompt: Option<&str>,
    ) -> Url {
        self.authorize_url_with_challenge(state, pkce.challenge(), login_hint, prompt)
    }

    /// [`OAuthClient::authorize_url`] for a PKCE S256 challenge computed elsewhere (the caller
    /// keeps the verifier).
    pub fn authorize_url_with_challenge(
        &self,
        state: &str,
        challenge: &str,
        login_hint: Option<&str>,
        prompt: Option<&str>,
    ) -> Url {
        let mut url = self.authorize.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", self.redirect_uri.as_str())
                .append_pair("response_mode", "query")
                .append_pair("scope", &self.scopes.join(" "))
                .append_pair("state", state)
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(h) = login_hint {
                q.append_pair("login_hint", h);
            }
            if let Some(p) = prompt {
                q.append_pair("prompt", p);
            }
        }
        url
    }

    /// Exchanges an authorization code (with its PKCE verifier) for credentials.
    pub async fn exchange_code(
        &self,
        code: &SecretString,
        verifier: &SecretString,
    ) -> Result<Credentials> {
        let scope = self.scopes.join(" ");
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", verifier.expose_secret()),
            ("scope", scope.as_str()),
        ];
        self.token_request(&form, "code exchange").await
    }

    /// Redeems a refresh token. The response carries a new refresh token: store it and
    /// drop the old one (the returned credentials keep the old one only if none came back).
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials> {
        let scope = self.scopes.join(" ");
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("scope", scope.as_str()),
        ];
        let mut creds = self.token_request(&form, "token refresh").await?;
        if creds.refresh_token.is_none() {
            creds.refresh_token = Some(refresh_token.clone());
        }
        Ok(creds)
    }

    async fn token_request(&self, form: &[(&str, &str)], what: &str) -> Result<Credentials> {
        let body = serde_urlencoded::to_string(form)
            .map_err(|e| Error::invalid(format!("could not encode the {what} form: {e}")))?;
        let resp = self
            .http
            .post(self.token.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Error::upstream(format!(
                    "the Microsoft token endpoint could not be reached for the {what}: {}",
                    describe_reqwest(&e)
                ))
            })?;
        let status = resp.status();
        let retry_after = crate::graph::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| {
            Error::upstream(format!(
                "reading the {what} response failed: {}",
                describe_reqwest(&e)
            ))
        })?;
        if status.is_success() {
            let parsed: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| {
                Error::upstream(format!(
                    "the Microsoft token endpoint answered the {what} with unexpected JSON: {e}"
                ))
            })?;
            if let Some(t) = parsed
                .token_type
                .as_deref()
                .filter(|t| !t.eq_ignore_ascii_case("bearer"))
            {
                return Err(Error::upstream(format!(
                    "the {what} returned a {t:?} token; a Bearer token was expected"
                )));
            }
            if parsed.access_token.is_empty() {
                return Err(Error::upstream(format!(
                    "the {what} returned an empty access token"
                )));
            }
            let expires_at = parsed
                .expires_in
                .map(|s| OffsetDateTime::now_utc() + Duration::from_secs(s.min(10 * 365 * 86_400)));
            return Ok(Credentials {
                access_token: SecretString::from(parsed.access_token),
                refresh_token: parsed
                    .refresh_token
                    .filter(|r| !r.is_empty())
                    .map(SecretString::from),
                expires_at,
                scopes: parsed
                    .scope
                    .map(|s| s.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default(),
            });
        }
        let err: TokenErrorResponse = serde_json::from_slice(&bytes).unwrap_or_default();
        let description = err
            .error_description
            .as_deref()
            .map(first_line)
            .unwrap_or_default();
        let code = if err.error.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            err.error.clone()
        };
        let kind = match err.error.as_str() {
            "invalid_grant" | "interaction_required" | "consent_required" | "login_required" => {
                ErrorKind::NeedsReauth
            }
            "invalid_client" | "unauthorized_client" => ErrorKind::Unauthorized,
            "invalid_request" | "invalid_scope" | "unsupported_grant_type" => {
                ErrorKind::InvalidInput
            }
            "temporarily_unavailable" => ErrorKind::Upstream,
            _ if status.as_u16() == 429 => ErrorKind::RateLimited { retry_after },
            _ if status.is_server_error() => ErrorKind::Upstream,
            _ if status.as_u16() == 401 => ErrorKind::Unauthorized,
            _ => ErrorKind::Upstream,
        };
        let hint = match kind {
            ErrorKind::NeedsReauth => {
                " — the Microsoft grant is no longer valid: an administrator must reconnect the Teams service account"
            }
            ErrorKind::Unauthorized => {
                " — check the app registration's client id and client secret"
            }
            _ => "",
        };
        Err(Error::new(
            kind,
            format!("the {what} failed: {code}: {description}{hint}"),
        ))
    }
}

/// A reqwest error described without its URL (which may carry a query we do not want in
/// logs).
pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body could not be read"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut msg = what.to_owned();
    let mut src = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = src {
        if depth == 0 {
            msg.push_str(": ");
        } else {
            msg.push_str(" / ");
        }
        msg.push_str(&s.to_string());
        src = s.source();
        depth += 1;
        if depth >= 3 {
            break;
        }
    }
    msg
}

#[cfg(test)]
mod tests {

    #[test]
    fn short_scope_never_slices_inside_a_character() {
        // 27 ASCII bytes then a two-byte character: byte 28 is inside "é".
        let hostile = format!("{}é", "a".repeat(27));
        assert_eq!(short_scope(&hostile), hostile);
        assert_eq!(short_scope("é"), "é");
        assert_eq!(
            short_scope("HTTPS://GRAPH.MICROSOFT.COM/User.Read.All"),
            "User.Read.All"
        );
        assert_eq!(short_scope("offline_access"), "offline_access");
    }

    use super::*;

    #[test]
    fn pkce_matches_the_rfc_7636_example() {
        // RFC 7636, appendix B
        let p = Pkce::from_verifier(SecretString::from(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned(),
        ))
        .unwrap();
        assert_eq!(p.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let g = Pkce::generate();
        assert_eq!(g.verifier().expose_secret().len(), 43);
        assert_eq!(
            g.challenge(),
            Pkce::challenge_for(g.verifier().expose_secret())
        );
        assert!(!format!("{g:?}").contains(g.verifier().expose_secret()));
        assert!(Pkce::from_verifier(SecretString::from("short".to_owned())).is_err());
        assert!(Pkce::from_verifier(SecretString::from("a b".repeat(20))).is_err());
    }

    #[test]
    fn scope_set_follows_guest_sync() {
        let s = scopes(false);
        assert_eq!(&s[..3], &["openid", "profile", "offline_access"]);
        assert!(s.contains(&"https://graph.microsoft.com/ChannelMessage.Send".to_owned()));
        assert!(!s.iter().any(|x| x.ends_with("User.Invite.All")));
        // 3 OpenID scopes, the 8 required Graph permissions, and Files.ReadWrite.All (asked
        // for, not required: without it files are linked).
        assert!(s.contains(&"https://graph.microsoft.com/Files.ReadWrite.All".to_owned()));
        assert!(!required_permissions(false).contains(&FILES_PERMISSION));
        assert_eq!(s.len(), 12);
        let g = scopes(true);
        assert!(g.contains(&"https://graph.microsoft.com/User.Invite.All".to_owned()));
        assert_eq!(
            short_scope("https://graph.microsoft.com/User.Read.All"),
            "User.Read.All"
        );
        assert_eq!(
            short_scope("HTTPS://GRAPH.MICROSOFT.COM/User.Read.All"),
            "User.Read.All"
        );
        assert_eq!(short_scope("openid"), "openid");
    }

    #[test]
    fn callback_checks_state_and_reports_errors() {
        let cb = parse_callback("code=abc&state=s1", "s1").unwrap();
        assert_eq!(cb.code.expose_secret(), "abc");
        assert_eq!(
            parse_callback("code=abc&state=s2", "s1")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert!(parse_callback("code=abc", "s1").is_err());
        assert!(parse_callback("state=s1", "s1").is_err());
        assert!(parse_callback("code=abc&state=", "").is_err());
        let denied = parse_callback(
            "error=access_denied&error_description=The+user+declined%0Atrace&state=s1",
            "s1",
        )
        .unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::Forbidden);
        assert!(denied.message().contains("The user declined"), "{denied}");
        assert!(!denied.message().contains("trace"));
        // an error with a wrong state is still a state error
        assert_eq!(
            parse_callback("error=access_denied&state=zz", "s1")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
    }
}
