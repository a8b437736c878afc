//! Files of Teams messages: downloading an attachment (a SharePoint file behind a
//! `reference` attachment) through Graph's shares API, bounded in size.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use switchboard_core::{Attachment, Error, FileContent, Result};

use crate::connection::MsTeamsConnection;

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
