//! The fault proxy: a TCP proxy on a free loopback port that passes, holds (a partition: bytes
//! are kept, connections stay open, and everything is delivered in order on heal), delays, or
//! resets a client's traffic. The fault cases ([`crate::faults`]), the robustness nemesis and
//! the clusters' peer links all go through it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Keep every byte, keep connections open (a partition); forward in order on heal.
    Hold,
    /// Forward each chunk after this delay.
    Delay(Duration),
}

/// A TCP proxy in front of one server address; stopped (every connection closed) on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<Mode>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `target` on a free port of 127.0.0.1, passing traffic.
    pub async fn start(target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Pass);
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (modes, tracked) = (mode.clone(), connections.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let modes = modes.clone();
                let connection = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        splice(client, server, modes).await;
                    }
                });
                let mut tracked = tracked.lock().unwrap_or_else(|p| p.into_inner());
                tracked.retain(|c| !c.is_finished());
                tracked.push(connection);
            }
        });
        Ok(FaultProxy {
            addr,
            target,
            mode,
            connections,
            acceptor,
        })
    }

    /// The proxy's address (127.0.0.1 and its port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with the server's `host:port` replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        url.replacen(&self.target.to_string(), &self.addr.to_string(), 1)
    }

    /// Partitions the client from the server: bytes are held, connections stay open.
    pub fn hold(&self) {
        self.mode.send_replace(Mode::Hold);
    }

    /// Ends a partition or delay: held bytes are delivered in order, then traffic passes.
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Pass);
    }

    /// Delays every chunk of traffic by `delay`.
    pub fn delay(&self, delay: Duration) {
        self.mode.send_replace(Mode::Delay(delay));
    }

    /// Resets every open connection (new ones are accepted and pass as the mode says).
    pub fn drop_connections(&self) {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        for connection in connections.drain(..) {
            connection.abort();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.drop_connections();
    }
}

/// Copies both ways until either side closes; aborting the task resets both sockets.
async fn splice(client: TcpStream, server: TcpStream, modes: watch::Sender<Mode>) {
    // Aborted tasks drop their sockets: with no linger they close with a reset, as a crashed
    // peer or a middlebox would.
    #[allow(deprecated)]
    for socket in [&client, &server] {
        let _ = socket.set_nodelay(true);
        let _ = socket.set_linger(Some(Duration::ZERO));
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, modes.subscribe()) => {}
        _ = pump(server_read, client_write, modes.subscribe()) => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        // Held bytes wait here, in order, until the partition heals.
        let current = match mode.wait_for(|m| *m != Mode::Hold).await {
            Ok(current) => *current,
            Err(_) => return,
        };
        if let Mode::Delay(delay) = current {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// The `127.0.0.1:port` of a server URL such as `etcd://127.0.0.1:2379/root`.
pub fn server_addr(url: &str) -> Option<SocketAddr> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit('@').next()?.split(',').next()?;
    host_port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn server_addresses_from_urls() {
        assert_eq!(
            server_addr("etcd://127.0.0.1:2379/root"),
            Some("127.0.0.1:2379".parse().unwrap())
        );
        assert_eq!(
            server_addr("redis://u:p@127.0.0.1:7000?root=x"),
            Some("127.0.0.1:7000".parse().unwrap())
        );
        assert_eq!(server_addr("memory://"), None);
    }

    #[tokio::test]
    async fn holds_delivers_in_order_on_heal_delays_and_resets() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let proxy = FaultProxy::start(target).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut answer = [0u8; 2];
        client.write_all(b"ab").await.unwrap();
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"ab");

        proxy.hold();
        client.write_all(b"cd").await.unwrap();
        let held = tokio::time::timeout(Duration::from_millis(300), client.read(&mut answer)).await;
        assert!(held.is_err(), "nothing passes a partition");
        proxy.heal();
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"cd", "held bytes arrive on heal");

        proxy.delay(Duration::from_millis(300));
        let sent = Instant::now();
        client.write_all(b"ef").await.unwrap();
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"ef");
        assert!(
            sent.elapsed() >= Duration::from_millis(600),
            "delayed both ways: {:?}",
            sent.elapsed()
        );
        proxy.heal();

        proxy.drop_connections();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut answer))
            .await
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "the connection was reset");
    }
}
