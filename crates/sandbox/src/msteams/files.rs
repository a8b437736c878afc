//! Channel files, as Graph keeps them in each channel's SharePoint folder:
//! `GET /teams/{t}/channels/{c}/filesFolder` (the folder's driveItem, with
//! `parentReference.driveId`), the simple upload `PUT /drives/{drive}/items/{folder}:/{name}:/content`
//! (201 with the new driveItem: `id`, `name`, `size`, `webUrl` ending in the file's name,
//! `eTag` `"{GUID},1"` whose GUID is the id a message's `reference` attachment uses) and
//! `GET /drives/{drive}/items/{id}/content` (the bytes), and `GET /shares/{shareId}/driveItem`
//! (a `webUrl` encoded as `u!` + unpadded base64url → the driveItem with a pre-authenticated
//! `@microsoft.graph.downloadUrl`, fetched without a bearer token). All need
//! `Files.ReadWrite.All`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::common::{GResult, GraphError, Limit, authenticate, ok_json, throttle};
use super::model::Perm;
use super::teams::{channel_visible, check_team_read, find_team};
use crate::SharedWorld;

/// The largest simple upload the sandbox takes (Graph: 250 MB; the sandbox keeps files in
/// memory).
pub(crate) const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub drive: String,
    pub name: String,
    pub bytes: Bytes,
    pub guid: String,
    pub web_url: String,
    /// The secret part of the item's pre-authenticated download URL.
    pub download_token: String,
}

/// Every uploaded file, by item id.
#[derive(Debug, Default)]
pub(crate) struct Drive {
    items: HashMap<String, Item>,
}

fn drive_id(team: &str) -> String {
    format!("b!sandbox-{team}")
}

fn folder_id(channel: &str) -> String {
    // Stable, URL-safe, unique per channel.
    let hex: String = channel.bytes().map(|b| format!("{b:02x}")).collect();
    format!("folder-{hex}")
}

/// `GET /teams/{team}/channels/{channel}/filesFolder`.
pub(crate) async fn files_folder(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path((team, channel)): Path<(String, String)>,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(
        &world,
        &caller,
        &[Limit::OtherGet, Limit::Channel(channel.clone())],
    )?;
    caller.require_teams(&[Perm::FILES_READWRITE_ALL])?;
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
            "Forbidden: the caller is not a member of the channel {}.",
            c.id
        )));
    }
    Ok(ok_json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#driveItems/$entity",
        "id": folder_id(&c.id),
        "name": c.display_name,
        "webUrl": format!("{}/sharepoint/{}/{}", world.base_url, t.id, c.display_name),
        "folder": {"childCount": 0},
        "parentReference": {"driveId": drive_id(&t.id), "driveType": "documentLibrary"},
    })))
}

/// `PUT /drives/{drive}/items/{folder}:/{name}:/content` and
/// `GET /drives/{drive}/items/{id}/content`.
pub(crate) async fn drive_item(
    State(world): State<SharedWorld>,
    method: axum::http::Method,
    headers: HeaderMap,
    Path((drive, rest)): Path<(String, String)>,
    body: Bytes,
) -> GResult {
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::OtherCall])?;
    caller.require_teams(&[Perm::FILES_READWRITE_ALL])?;
    if method == axum::http::Method::GET {
        let id = rest.strip_suffix("/content").ok_or_else(|| {
            GraphError::new(
                StatusCode::BAD_REQUEST,
                "invalidRequest",
                "unsupported drive path",
            )
        })?;
        let files = world.msteams.files.lock();
        let item = files
            .items
            .get(id)
            .filter(|i| i.drive == drive)
            .ok_or_else(|| {
                GraphError::not_found("itemNotFound", "The resource could not be found.")
            })?;
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            item.bytes.clone(),
        )
            .into_response());
    }
    // PUT {folder}:/{name}:/content
    let (folder, name) = rest
        .strip_suffix(":/content")
        .and_then(|r| r.split_once(":/"))
        .ok_or_else(|| {
            GraphError::new(
                StatusCode::BAD_REQUEST,
                "invalidRequest",
                "expected /drives/{drive}/items/{parent-id}:/{filename}:/content",
            )
        })?;
    let name = name.trim();
    if name.is_empty()
        || name.len() > 400
        || name.contains(['/', '\\', ':', '*', '?', '"', '<', '>', '|'])
    {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "The file name is not valid.",
        ));
    }
    if body.len() > MAX_UPLOAD_BYTES {
        return Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "requestEntityTooLarge",
            "The file is larger than a simple upload allows; use an upload session.",
        ));
    }
    let known_folder = {
        let dir = world.msteams.dir.read();
        dir.teams.iter().any(|t| {
            drive_id(&t.id) == drive && t.channels.iter().any(|c| folder_id(&c.id) == folder)
        })
    };
    if !known_folder {
        return Err(GraphError::not_found(
            "itemNotFound",
            "The parent folder does not exist.",
        ));
    }
    let id = format!("01SB{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    let guid = uuid::Uuid::new_v4().to_string().to_uppercase();
    let web_url = format!("{}/sharepoint/{drive}/{folder}/{name}", world.base_url);
    let item = Item {
        drive: drive.clone(),
        name: name.to_owned(),
        bytes: body.clone(),
        guid: guid.clone(),
        web_url: web_url.clone(),
        download_token: uuid::Uuid::new_v4().simple().to_string(),
    };
    world.msteams.files.lock().items.insert(id.clone(), item);
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#driveItems/$entity",
            "id": id,
            "name": name,
            "size": body.len(),
            "webUrl": web_url,
            "eTag": format!("\"{{{guid}}},1\""),
            "file": {"mimeType": "application/octet-stream"},
            "parentReference": {"driveId": drive, "id": folder},
        })),
    )
        .into_response())
}

/// `GET /shares/{shareId}/driveItem`: `shareId` is `u!` + the unpadded base64url of a
/// sharing URL or `webUrl` (Graph's "encoding sharing URLs").
pub(crate) async fn shared_drive_item(
    State(world): State<SharedWorld>,
    headers: HeaderMap,
    Path(share): Path<String>,
) -> GResult {
    use base64::Engine as _;
    let caller = authenticate(&world, &headers)?;
    throttle(&world, &caller, &[Limit::OtherGet])?;
    caller.require_teams(&[Perm::FILES_READWRITE_ALL])?;
    let bad = || {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            "Invalid shares key: expected u! followed by the base64url-encoded sharing URL.",
        )
    };
    let encoded = share.strip_prefix("u!").ok_or_else(bad)?;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let files = world.msteams.files.lock();
    let (id, item) = files
        .items
        .iter()
        .find(|(_, i)| i.web_url == url)
        .ok_or_else(|| {
            GraphError::not_found(
                "itemNotFound",
                "The sharing link no longer exists, or you do not have permission to access it.",
            )
        })?;
    Ok(ok_json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#driveItems/$entity",
        "id": id,
        "name": item.name,
        "size": item.bytes.len(),
        "webUrl": item.web_url,
        "file": {"mimeType": "application/octet-stream"},
        "@microsoft.graph.downloadUrl": format!(
            "{}/sharepoint/download/{id}?tempauth={}",
            world.base_url, item.download_token
        ),
    })))
}

/// The pre-authenticated download URL (no bearer token; the `tempauth` query is the key).
pub(crate) async fn download(
    State(world): State<SharedWorld>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> axum::response::Response {
    let files = world.msteams.files.lock();
    match files.items.get(&id) {
        Some(i) if q.get("tempauth") == Some(&i.download_token) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            i.bytes.clone(),
        )
            .into_response(),
        _ => (StatusCode::UNAUTHORIZED, "invalid or expired download link").into_response(),
    }
}

impl Drive {
    /// The files uploaded so far: (web URL, name, bytes), for the control API and tests.
    pub(crate) fn list(&self) -> Vec<(String, String, usize, String)> {
        let mut v: Vec<_> = self
            .items
            .values()
            .map(|i| {
                (
                    i.web_url.clone(),
                    i.name.clone(),
                    i.bytes.len(),
                    i.guid.clone(),
                )
            })
            .collect();
        v.sort();
        v
    }
}
