//! `frpc status`, `frpc reload` and `frpc stop`: ask the running client's
//! admin API (`webServer.*` of the same config file), as frp's do.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use config::WebServerConfig;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use unicode_width::UnicodeWidthStr;

use crate::state::LivenessReport;

/// Every call is over within this long.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One request to the admin API; the answer's body, or an error that says
/// what went wrong.
pub async fn call(web: &WebServerConfig, method: Method, path: &str) -> Result<String> {
    if !web.enabled() {
        // (Not named from `path`: `frpc status` asks /api/liveness first.)
        bail!(
            "webServer.port is not set in the config: frpc status, reload and stop talk to the \
             running frpc's admin API, which is off without it"
        );
    }
    let addr = format!("{}:{}", web.addr, web.port);
    tokio::time::timeout(TIMEOUT, request(web, &addr, method, path))
        .await
        .with_context(|| format!("no answer from the admin API at {addr} within {TIMEOUT:?}"))?
}

async fn request(web: &WebServerConfig, addr: &str, method: Method, path: &str) -> Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the admin API at {addr} (is frpc running?)"))?;
    let mut sender = if web.tls.cert_file.is_empty() {
        handshake(TokioIo::new(tcp)).await?
    } else {
        handshake(TokioIo::new(tls(web, addr, tcp).await?)).await?
    };
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr);
    if !web.user.is_empty() {
        let auth = net::web::basic_auth(&web.user, &web.password);
        req = req.header(hyper::header::AUTHORIZATION, auth);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new())?)
        .await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    match status {
        StatusCode::OK => Ok(body),
        StatusCode::UNAUTHORIZED => bail!("the admin API refused webServer.user/password"),
        s => bail!("{}: {}", s, body.trim_end()),
    }
}

async fn handshake<T>(io: T) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// TLS to an admin API served with `webServer.tls`: the server must present
/// exactly the certificate the config names (the running frpc read the same
/// file), whatever name or CA it has.
async fn tls(
    web: &WebServerConfig,
    addr: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use net::tls::{check_server, client_config, fingerprint, load_certs, ServerTrust};
    let path = std::path::Path::new(&web.tls.cert_file);
    let certs =
        load_certs(path).with_context(|| format!("webServer.tls.certFile {}", path.display()))?;
    let first = certs
        .first()
        .with_context(|| format!("webServer.tls.certFile {}: no certificate", path.display()))?;
    let trust = ServerTrust::Pinned(fingerprint(first));
    let mut cfg = (*client_config(&trust, None)?).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from(web.addr.clone())
        .unwrap_or_else(|_| rustls_pki_types::ServerName::try_from("localhost").expect("a name"));
    let io = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS to the admin API at {addr}"))?;
    check_server(&trust, addr, io.get_ref().1.peer_certificates()).map_err(|_| {
        anyhow::anyhow!(
            "the admin API at {addr} presents another certificate than webServer.tls.certFile \
             {}: is this the config of the frpc running there?",
            path.display()
        )
    })?;
    Ok(io)
}

#[derive(Deserialize)]
struct ProxyLine {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    status: String,
    err: String,
    local_addr: String,
    remote_addr: String,
}

/// `frpc status`: the connection, then a table of the proxies.
pub async fn status(web: &WebServerConfig) -> Result<String> {
    let live: LivenessReport =
        serde_json::from_str(&call(web, Method::GET, "/api/liveness").await?)
            .context("the admin API's /api/liveness")?;
    let by_type: std::collections::BTreeMap<String, Vec<ProxyLine>> =
        serde_json::from_str(&call(web, Method::GET, "/api/status").await?)
            .context("the admin API's /api/status")?;
    let mut out = connection_line(&live);
    let rows: Vec<[String; 6]> = by_type
        .into_values()
        .flatten()
        .map(|p| [p.name, p.kind, p.status, p.local_addr, p.remote_addr, p.err])
        // Names come from config files, errors from frps: no control
        // character reaches the terminal, and no cell is wider than 128.
        .map(|row| row.map(|cell| net::logging::Escaped(&cell).to_string()))
        .collect();
    out.push_str(&table(
        [
            "NAME",
            "TYPE",
            "STATUS",
            "LOCAL ADDR",
            "REMOTE ADDR",
            "ERROR",
        ],
        &rows,
    ));
    Ok(out)
}

fn connection_line(l: &LivenessReport) -> String {
    let mut parts = vec![format!("server {}: {}", l.server, l.state.as_str())];
    if let Some(rtt) = l.rtt_ms {
        parts.push(format!("rtt {rtt:.1} ms"));
    }
    if let Some(s) = l.last_received_secs {
        parts.push(format!("last received {s:.1} s ago"));
    }
    parts.push(format!("reconnects {}", l.reconnects));
    if l.outages > 0 {
        parts.push(format!(
            "outages {} ({:.0} s in all)",
            l.outages, l.outage_seconds_total
        ));
    }
    if let Some(b) = l.backoff_seconds {
        parts.push(format!("next attempt in {b:.1} s"));
    }
    let mut out = parts.join(", ");
    out.push('\n');
    if let Some(fp) = &l.server_fingerprint {
        out.push_str(&format!("server certificate SHA-256 {fp}\n"));
    }
    out.push('\n');
    out
}

/// Columns padded to their widest cell, by the columns a terminal gives
/// each character (two for most CJK characters and emoji), not by count.
fn table<const N: usize>(head: [&str; N], rows: &[[String; N]]) -> String {
    let mut width = head.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.width());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.width()))))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_for_wide_characters() {
        let rows = [
            ["ssh".to_owned(), "running".to_owned()],
            ["服务器".to_owned(), "running".to_owned()],
            ["🚀x".to_owned(), "start error".to_owned()],
        ];
        let out = table(["NAME", "STATUS"], &rows);
        let second = ["STATUS", "running", "running", "start error"];
        // Where the second column starts, in terminal columns: "服务器" is
        // six wide, the widest name.
        let starts: Vec<usize> = out
            .lines()
            .zip(second)
            .map(|(l, cell)| l[..l.find(cell).expect("second cell")].width())
            .collect();
        assert_eq!(starts, vec![8; 4], "{out}");
    }
}
