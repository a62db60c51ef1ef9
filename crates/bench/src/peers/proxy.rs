//! A counting TCP proxy on loopback: every tool's server sits behind one, so bytes on the wire
//! are counted the same way for all of them.

use anyhow::Result;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    pub address: SocketAddr,
    /// Bytes from the server to the clients, and from the clients to the server.
    down: Arc<AtomicU64>,
    up: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (down, up) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (down_in, up_in) = (Arc::clone(&down), Arc::clone(&up));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (down, up) = (Arc::clone(&down_in), Arc::clone(&up_in));
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(pump(client_read, server_write, up), pump(server_read, client_write, down));
                    }
                });
            }
        });
        Ok(Self { address, down, up, task })
    }

    /// Bytes carried both ways since the last call, and resets the count.
    pub fn take(&self) -> u64 {
        self.down.swap(0, Ordering::Relaxed) + self.up.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one direction, counting, until either side closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: Arc<AtomicU64>,
) {
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                count.fetch_add(read as u64, Ordering::Relaxed);
                if to.write_all(&buffer[..read]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}
