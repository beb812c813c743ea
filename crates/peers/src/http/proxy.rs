//! Which proxy keyrot's HTTP clients use: the one `[daemon] proxy` names,
//! or none. Never one from the environment: reqwest would otherwise take
//! `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`, and an `http://` proxy set for
//! some other program would see every token keyrot sends over plain HTTP
//! (a loopback OpenBao, say) and could answer in the peer's place.
//!
//! The setting is process-wide because clients are built by providers and
//! sinks, which are built from their own config sections; the daemon sets
//! it from `[daemon]` before it builds them (at start and at each reload).
//! Loopback peers are always reached directly.

use std::sync::RwLock;

use reqwest::{ClientBuilder, NoProxy, Proxy, Url};

/// The proxy clients built from now on use (`None`: direct).
static PROXY: RwLock<Option<Url>> = RwLock::new(None);

/// Hosts never sent through the proxy.
const DIRECT: &str = "localhost,127.0.0.0/8,::1";

/// Sets the proxy of every client built after this call (`[daemon] proxy`,
/// validated by the config: `https://`, or `http://` to a loopback host).
pub fn set(proxy: Option<&Url>) {
    let mut slot = PROXY.write().unwrap_or_else(|e| e.into_inner());
    *slot = proxy.cloned();
}

/// The proxy set by [`set`].
pub(super) fn configured() -> Option<Url> {
    PROXY.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `builder` with no proxy from the environment, and `proxy` (when given)
/// for every host but loopback ones.
pub(super) fn apply(
    builder: ClientBuilder,
    proxy: Option<&Url>,
) -> Result<ClientBuilder, reqwest::Error> {
    let builder = builder.no_proxy();
    match proxy {
        None => Ok(builder),
        Some(url) => {
            let p = Proxy::all(url.clone())?.no_proxy(NoProxy::from_string(DIRECT));
            Ok(builder.proxy(p))
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers every request `200 ok` and sends the request
    /// line of each one it got.
    async fn server() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let _ = tx.send(head.lines().next().unwrap_or_default().to_string());
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            }
        });
        (url, rx)
    }

    #[tokio::test]
    async fn a_configured_proxy_carries_remote_hosts_and_never_loopback_ones() {
        let (proxy_url, mut via_proxy) = server().await;
        let (peer_url, mut direct) = server().await;
        let proxy = reqwest::Url::parse(&proxy_url).unwrap();
        let timeout = SignedDuration::from_secs(10);
        let client = crate::http::client_via("p", timeout, None, Some(&proxy)).unwrap();
        let kind = crate::http::PeerKind::HttpProvider;
        let remote = client.get("http://api.example.invalid/v1/keys");
        let a = crate::http::send("p", "list", kind, timeout, remote)
            .await
            .unwrap();
        assert_eq!(&a.body[..], b"ok");
        assert_eq!(
            via_proxy.recv().await.unwrap(),
            "GET http://api.example.invalid/v1/keys HTTP/1.1"
        );
        let local = client.get(format!("{peer_url}/v1/keys"));
        crate::http::send("p", "list", kind, timeout, local)
            .await
            .unwrap();
        assert_eq!(direct.recv().await.unwrap(), "GET /v1/keys HTTP/1.1");
        assert!(
            via_proxy.try_recv().is_err(),
            "a loopback peer went through the proxy"
        );
    }
}
