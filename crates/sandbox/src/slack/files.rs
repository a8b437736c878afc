//! Files: `files.getUploadURLExternal` → POST the bytes to the returned URL →
//! `files.completeUploadExternal`; authenticated downloads of `url_private`; avatars.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::Principal;
use super::model::{FileRec, random_id};
use super::ops::NewMessage;
use super::web::{ApiError, ApiResult, Args, postable_channel};
use crate::SharedWorld;
use crate::util::now_unix;

/// Largest accepted upload (the sandbox keeps files in memory).
pub(crate) const MAX_UPLOAD: usize = 64 * 1024 * 1024;

fn guess_type(name: &str) -> (&'static str, &'static str) {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => ("image/png", "png"),
        "jpg" | "jpeg" => ("image/jpeg", "jpg"),
        "gif" => ("image/gif", "gif"),
        "pdf" => ("application/pdf", "pdf"),
        "txt" => ("text/plain", "text"),
        "md" => ("text/plain", "markdown"),
        "csv" => ("text/csv", "csv"),
        "json" => ("application/json", "json"),
        "zip" => ("application/zip", "zip"),
        "docx" => (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "docx",
        ),
        _ => ("application/octet-stream", "binary"),
    }
}

/// Creates a pending file (no bytes yet) and returns `(file_id, upload_id)`.
pub(crate) fn new_pending(
    world: &crate::World,
    user: u32,
    name: &str,
    length: u64,
) -> (String, String) {
    let (mimetype, filetype) = guess_type(name);
    let file_id = random_id("F");
    let upload_id = crate::util::random_token(32);
    let mut ws = world.slack.ws.write();
    ws.files.insert(
        file_id.clone(),
        FileRec {
            id: file_id.clone(),
            name: name.to_owned(),
            title: name.to_owned(),
            mimetype: mimetype.to_owned(),
            filetype: filetype.to_owned(),
            user,
            created: now_unix(),
            length,
            bytes: None,
            channels: Vec::new(),
            completed: false,
        },
    );
    ws.uploads.insert(upload_id.clone(), file_id.clone());
    (file_id, upload_id)
}

/// `files.info`: a file the caller can see (uploaded it, or it is shared in a conversation
/// the caller is in). Slack Connect events carry only `{id, file_access:"check_file_info"}`:
/// this is where the URLs come from.
pub(crate) fn info(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    if !p.scopes.has("files:read") {
        return Err(ApiError::MissingScope("files:read"));
    }
    let id = args.str("file").ok_or(ApiError::Code("file_not_found"))?;
    let ws = world.slack.ws.read();
    let f = ws
        .files
        .get(&id)
        .filter(|f| f.completed)
        .ok_or(ApiError::Code("file_not_found"))?;
    let visible = f.user == p.user
        || f.channels
            .iter()
            .any(|c| ws.channel(*c).members.contains(&p.user));
    if !visible {
        return Err("file_not_found".into());
    }
    // Where it was shared: {public|private: {channel: [{ts, thread_ts?}]}}.
    let (mut public, mut private) = (serde_json::Map::new(), serde_json::Map::new());
    for &c in &f.channels {
        let ch = ws.channel(c);
        let shares: Vec<Value> = ch
            .messages
            .iter()
            .filter(|m| !m.deleted && m.files.contains(&f.id))
            .map(|m| {
                let mut s = json!({"ts": super::model::fmt_ts(m.ts), "channel_name": ch.name});
                if let Some(t) = m.thread_ts.filter(|t| *t != m.ts) {
                    s["thread_ts"] = json!(super::model::fmt_ts(t));
                }
                s
            })
            .collect();
        let map = if ch.is_private {
            &mut private
        } else {
            &mut public
        };
        map.insert(ch.id.clone(), json!(shares));
    }
    let mut file = super::render::file_json(&ws, &world.base_url, f);
    let mut shares = serde_json::Map::new();
    if !public.is_empty() {
        shares.insert("public".into(), Value::Object(public));
    }
    if !private.is_empty() {
        shares.insert("private".into(), Value::Object(private));
    }
    file["shares"] = Value::Object(shares);
    Ok(json!({
        "file": file,
        "comments": [],
        "response_metadata": {"next_cursor": ""},
    }))
}

pub(crate) fn get_upload_url(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    if !p.scopes.has("files:write") {
        return Err(ApiError::MissingScope("files:write"));
    }
    let filename = args.required("filename")?;
    let length = args.required("length")?;
    let length: u64 = length
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::Invalid("[ERROR] `length` must be a positive integer".into()))?;
    if length as usize > MAX_UPLOAD {
        return Err("file_too_large".into());
    }
    let (file_id, upload_id) = new_pending(world, p.user, &filename, length);
    Ok(json!({
        "upload_url": format!("{}/slack/upload/v1/{upload_id}", world.base_url),
        "file_id": file_id,
    }))
}

/// Marks files complete and shares them in a channel as one message.
pub(crate) fn share(
    world: &crate::World,
    user: u32,
    as_bot: bool,
    files: &[(String, Option<String>)],
    channel: Option<u32>,
    thread_ts: Option<u64>,
    text: String,
) -> Result<Option<(String, u64)>, &'static str> {
    {
        let mut ws = world.slack.ws.write();
        for (id, _) in files {
            match ws.files.get(id) {
                Some(f) if f.bytes.is_some() && !f.completed && f.user == user => {}
                _ => return Err("file_not_found"),
            }
        }
        for (id, title) in files {
            if let Some(f) = ws.files.get_mut(id) {
                f.completed = true;
                if let Some(t) = title.as_ref().filter(|t| !t.is_empty()) {
                    f.title = t.clone();
                }
            }
        }
    }
    let Some(ch) = channel else { return Ok(None) };
    let posted = world.slack.post(
        &world.base_url,
        ch,
        NewMessage {
            user,
            text,
            thread_ts,
            as_bot,
            files: files.iter().map(|(id, _)| id.clone()).collect(),
            ..NewMessage::default()
        },
    )?;
    Ok(Some((posted.channel_id, posted.ts)))
}

pub(crate) fn complete_upload(world: &crate::World, p: &Principal, args: &Args) -> ApiResult {
    if !p.scopes.has("files:write") {
        return Err(ApiError::MissingScope("files:write"));
    }
    let files = args
        .json("files")
        .map_err(|_| ApiError::Invalid("[ERROR] `files` must be a JSON array".into()))?
        .ok_or_else(|| ApiError::Invalid("[ERROR] missing required field: files".into()))?;
    let list = files
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::Invalid("[ERROR] `files` must be a non-empty array".into()))?;
    let mut parsed = Vec::new();
    for f in list {
        let id = f["id"]
            .as_str()
            .ok_or_else(|| ApiError::Invalid("[ERROR] each file needs an `id`".into()))?;
        parsed.push((id.to_owned(), f["title"].as_str().map(str::to_owned)));
    }
    let channel_key = args.str("channel_id").or_else(|| {
        args.str("channels").and_then(|c| {
            c.split(',')
                .map(str::trim)
                .find(|s| !s.is_empty())
                .map(str::to_owned)
        })
    });
    let channel = match channel_key {
        None => None,
        Some(key) => Some(postable_channel(&world.slack.ws.read(), p, &key)?),
    };
    let thread_ts = match args.str("thread_ts") {
        None => None,
        Some(t) => Some(super::model::parse_ts(&t).ok_or(ApiError::Code("invalid_thread_ts"))?),
    };
    let text = args.str("initial_comment").unwrap_or_default();
    share(world, p.user, p.is_bot(), &parsed, channel, thread_ts, text)?;
    let ws = world.slack.ws.read();
    let out: Vec<Value> = parsed
        .iter()
        .filter_map(|(id, _)| ws.files.get(id))
        .map(|f| json!({"id": f.id, "title": f.title}))
        .collect();
    Ok(json!({"files": out}))
}

/// One part of a `multipart/form-data` body.
#[derive(Debug)]
pub(crate) struct Part {
    pub name: Option<String>,
    pub is_file: bool,
    pub data: Vec<u8>,
}

fn disposition_param(headers: &str, key: &str) -> Option<String> {
    let line = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    line.split(';').map(str::trim).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Splits a `multipart/form-data` body into its parts. `None` when malformed.
pub(crate) fn multipart_parts(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    if boundary.is_empty() {
        return None;
    }
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut pos = find(body, d, 0)? + d.len();
    let mut parts = Vec::new();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Some(parts);
        }
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let headers = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let start = head_end + 4;
        let next = find(body, d, start)?;
        let end = next.saturating_sub(2).max(start);
        parts.push(Part {
            name: disposition_param(&headers, "name"),
            is_file: disposition_param(&headers, "filename").is_some(),
            data: body[start..end].to_vec(),
        });
        pos = next + d.len();
    }
}

/// The uploaded bytes of a multipart body: its file part, else its first part.
fn multipart_file(content_type: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut parts = multipart_parts(content_type, body)?;
    let i = parts.iter().position(|p| p.is_file).unwrap_or(0);
    (i < parts.len()).then(|| parts.swap_remove(i).data)
}

/// `POST /slack/upload/v1/{upload_id}`: receives the bytes (raw body or multipart).
pub(crate) async fn upload_route(
    State(world): State<SharedWorld>,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = if ctype
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        match multipart_file(&ctype, &body) {
            Some(b) => b,
            None => return (StatusCode::BAD_REQUEST, "malformed multipart body").into_response(),
        }
    } else {
        body.to_vec()
    };
    let mut ws = world.slack.ws.write();
    let Some(file_id) = ws.uploads.remove(&upload_id) else {
        return (StatusCode::NOT_FOUND, "unknown or used upload URL").into_response();
    };
    let n = bytes.len();
    if let Some(f) = ws.files.get_mut(&file_id) {
        f.bytes = Some(Arc::new(bytes));
    }
    (StatusCode::OK, format!("OK - {n}")).into_response()
}

fn file_response(
    world: &crate::World,
    headers: &HeaderMap,
    file_id: &str,
    download: bool,
) -> Response {
    let token = super::web::bearer(headers);
    match world.slack.auth.lock().check(token.as_deref()) {
        Ok(p) if p.scopes.has("files:read") || p.scopes.has("files:write") => {}
        _ => {
            return (
                StatusCode::UNAUTHORIZED,
                "a token with files:read is required",
            )
                .into_response();
        }
    }
    let ws = world.slack.ws.read();
    let Some(f) = ws.files.get(file_id) else {
        return (StatusCode::NOT_FOUND, "file not found").into_response();
    };
    let Some(bytes) = f.bytes.clone() else {
        return (StatusCode::NOT_FOUND, "file has no content yet").into_response();
    };
    let mut resp = (StatusCode::OK, bytes.as_ref().clone()).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&f.mimetype) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if download {
        let safe: String = f
            .name
            .chars()
            .map(|c| if c == '"' || c.is_control() { '_' } else { c })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    resp
}

/// `GET /slack/files/{file_id}/{name}` (`url_private`), bearer token with `files:read`.
pub(crate) async fn file_route(
    State(world): State<SharedWorld>,
    Path((file_id, _name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    file_response(&world, &headers, &file_id, false)
}

/// `GET /slack/files/{file_id}/download/{name}` (`url_private_download`).
pub(crate) async fn file_download_route(
    State(world): State<SharedWorld>,
    Path((file_id, _name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    file_response(&world, &headers, &file_id, true)
}

/// A 1×1 PNG, served for every avatar and team icon URL.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x60, 0x60, 0xF8, 0xCF,
    0x00, 0x00, 0x03, 0x03, 0x01, 0x00, 0x18, 0xDD, 0x8D, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// `GET /slack/avatars/{id}/{size}`: a placeholder image.
pub(crate) async fn avatar_route(Path((_id, _size)): Path<(String, String)>) -> Response {
    let mut resp = (StatusCode::OK, PIXEL_PNG).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_first_file_part() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"filename\"\r\n\r\nhello.txt\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\nContent-Type: text/plain\r\n\r\nhello world\r\n--XyZ--\r\n";
        assert_eq!(
            multipart_file("multipart/form-data; boundary=XyZ", body).as_deref(),
            Some(&b"hello world"[..])
        );
        assert!(multipart_file("multipart/form-data", body).is_none());
    }

    #[test]
    fn types_from_extension() {
        assert_eq!(guess_type("a.PNG").0, "image/png");
        assert_eq!(guess_type("noext").1, "binary");
    }
}
