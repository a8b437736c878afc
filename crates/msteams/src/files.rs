//! Files of Teams messages: downloading an attachment (a SharePoint file behind a
//! `reference` attachment) through Graph's shares API, bounded in size.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use std::sync::Arc;

use reqwest::Method;
use switchboard_core::{Attachment, ChannelRef, Error, FileContent, Result};

use crate::connection::MsTeamsConnection;
use crate::graph::GraphRequest;
use crate::token::TokenProvider;

/// The largest file uploaded in one request (Graph's simple upload; larger files need an
/// upload session, which this adapter does not open: they are linked).
pub const MAX_SIMPLE_UPLOAD: usize = 250 * 1024 * 1024;

/// A file uploaded into a channel's folder, ready to be attached to a message as a
/// `reference` attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedFile {
    /// The attachment id: the GUID of the driveItem's `eTag`.
    pub id: String,
    /// The file name.
    pub name: String,
    /// The driveItem's `webUrl` (ends in the file name, as Teams wants for `contentUrl`).
    pub web_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Folder {
    id: String,
    parent_reference: ParentRef,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParentRef {
    drive_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Uploaded {
    name: String,
    web_url: String,
    #[serde(default, rename = "eTag")]
    etag: Option<String>,
}

/// The GUID of a driveItem `eTag` (`"{GUID},1"`).
pub fn etag_guid(etag: &str) -> Option<String> {
    let inner = etag.trim().trim_matches('"');
    let guid = inner.split(',').next()?.trim_matches(['{', '}']);
    let ok = guid.len() == 36
        && guid.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    ok.then(|| guid.to_ascii_lowercase())
}

/// A file name SharePoint accepts: the characters it refuses replaced, at most 200 bytes.
pub fn safe_file_name(name: &str) -> String {
    let mut out: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_control() || "\\/:*?\"<>|#%".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    while out.len() > 200 {
        out.pop();
    }
    let out = out.trim_matches(['.', ' ']).to_owned();
    if out.is_empty() {
        "file".to_owned()
    } else {
        out
    }
}

/// Uploads `file` into `channel`'s files folder (`filesFolder`, then the simple upload),
/// as the service account or `as_user`.
pub async fn upload(
    conn: &MsTeamsConnection,
    channel: &ChannelRef,
    file: &FileContent,
    as_user: Option<&Arc<TokenProvider>>,
) -> Result<UploadedFile> {
    if file.bytes.len() > MAX_SIMPLE_UPLOAD {
        return Err(Error::invalid(format!(
            "{:?} is larger than one upload allows; it is linked instead",
            file.name
        )));
    }
    let graph = conn.graph();
    let folder_url = graph.url(
        &[
            "teams",
            channel.team.as_str(),
            "channels",
            channel.channel.as_str(),
            "filesFolder",
        ],
        &[],
    );
    let send = |req: GraphRequest| async move {
        match as_user {
            Some(t) => graph.send_as(&req, t).await,
            None => graph.send(&req).await,
        }
        .map_err(|f| conn.team_error(channel.team.as_str(), f.into()))
    };
    let folder: Folder = send(GraphRequest::get(folder_url))
        .await?
        .json("GET filesFolder")?;
    let name = safe_file_name(&file.name);
    let put_url = graph.url(
        &[
            "drives",
            &folder.parent_reference.drive_id,
            "items",
            &format!("{}:", folder.id),
            &format!("{name}:"),
            "content",
        ],
        &[],
    );
    let req = GraphRequest::new(Method::PUT, put_url)
        .bytes(file.bytes.clone(), "application/octet-stream");
    let item: Uploaded = send(req).await?.json("PUT drive item content")?;
    let id = item
        .etag
        .as_deref()
        .and_then(etag_guid)
        .ok_or_else(|| Error::upstream("Graph's uploaded driveItem has no usable eTag"))?;
    Ok(UploadedFile {
        id,
        name: item.name,
        web_url: item.web_url,
    })
}

/// The sharing id Graph's `/shares/{id}` takes for a URL: `u!` + unpadded base64url of the
/// URL (Graph's "encoding sharing URLs").
pub fn share_id(url: &str) -> String {
    format!("u!{}", URL_SAFE_NO_PAD.encode(url.trim().as_bytes()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DriveItem {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    file: Option<FileFacet>,
    #[serde(default, rename = "@microsoft.graph.downloadUrl")]
    download_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileFacet {
    #[serde(default)]
    mime_type: Option<String>,
}

fn too_large(name: &str, size: u64, max: u64) -> Error {
    Error::invalid(format!(
        "the Teams file {name:?} is {size} bytes, more than the {max} bytes allowed; link it instead"
    ))
}

/// Downloads `attachment` with `conn`'s credentials, refusing more than `max_bytes`.
pub async fn fetch(
    conn: &MsTeamsConnection,
    attachment: &Attachment,
    max_bytes: u64,
) -> Result<FileContent> {
    let url = attachment.url.trim();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::invalid(format!(
            "the attachment {:?} has no downloadable URL",
            attachment.name
        )));
    }
    if let Some(size) = attachment.size.filter(|s| *s > max_bytes) {
        return Err(too_large(&attachment.name, size, max_bytes));
    }
    let graph = conn.graph();
    let item_url = graph.url(
        &["shares", &share_id(url), "driveItem"],
        &[("$select", "id,name,size,file,@microsoft.graph.downloadUrl")],
    );
    let item: DriveItem = graph.get_json(item_url).await?;
    let name = item
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| attachment.name.clone());
    if let Some(size) = item.size.filter(|s| *s > max_bytes) {
        return Err(too_large(&name, size, max_bytes));
    }
    let download = item.download_url.ok_or_else(|| {
        Error::upstream(format!(
            "Graph returned no download URL for the Teams file {name:?}"
        ))
    })?;
    let download = url::Url::parse(&download)
        .map_err(|e| Error::upstream(format!("Graph returned an unusable download URL: {e}")))?;
    if !matches!(download.scheme(), "https" | "http") {
        return Err(Error::upstream(
            "Graph returned a download URL that is not HTTP",
        ));
    }
    // pre-authenticated: no bearer token goes there
    let mut resp =
        graph.http().get(download).send().await.map_err(|e| {
            Error::upstream(format!("downloading the Teams file {name:?} failed: {e}"))
        })?;
    if !resp.status().is_success() {
        return Err(Error::upstream(format!(
            "downloading the Teams file {name:?} failed: HTTP {}",
            resp.status().as_u16()
        )));
    }
    if let Some(len) = resp.content_length().filter(|l| *l > max_bytes) {
        return Err(too_large(&name, len, max_bytes));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Error::upstream(format!("downloading the Teams file {name:?} failed: {e}")))?
    {
        if bytes.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(too_large(
                &name,
                bytes.len() as u64 + chunk.len() as u64,
                max_bytes,
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(FileContent {
        name,
        mime_type: item
            .file
            .and_then(|f| f.mime_type)
            .or_else(|| attachment.mime_type.clone()),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharing_urls_are_encoded_as_graph_documents() {
        // Graph's example: https://onedrive.live.com/redir?resid=1231244193912!12&authKey=1201919!12921!1
        assert_eq!(
            share_id(
                "https://onedrive.live.com/redir?resid=1231244193912!12&authKey=1201919!12921!1"
            ),
            "u!aHR0cHM6Ly9vbmVkcml2ZS5saXZlLmNvbS9yZWRpcj9yZXNpZD0xMjMxMjQ0MTkzOTEyITEyJmF1dGhLZXk9MTIwMTkxOSExMjkyMSEx"
        );
    }
}
