//! A TCP proxy to the Kafka broker that keeps its clients on it: the broker
//! advertises its own address in metadata responses, so the proxy rewrites
//! the advertised port (same length, so the frame sizes stay valid) to its
//! own. Cutting it drops every connection and refuses new ones, like a
//! broker that went away.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards `127.0.0.1:<random port>` to the broker until cut.
pub struct KafkaProxy {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl KafkaProxy {
    /// Starts a proxy to `broker` (an `ip:port` the broker also advertises).
    pub async fn start(broker: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let advertised = advertised_bytes(broker.ip().to_string(), broker.port());
        let replacement = advertised_bytes(broker.ip().to_string(), address.port());
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (cut_flag, tokens, stopped) = (cut.clone(), connections.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((inbound, _)) = accepted else { continue };
                if cut_flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let token = tokens.lock().expect("proxy lock").clone();
                let (from, to) = (advertised.clone(), replacement.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(broker).await else {
                        return;
                    };
                    let (client_read, mut client_write) = inbound.into_split();
                    let (mut broker_read, broker_write) = outbound.into_split();
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = forward(client_read, broker_write) => {}
                        _ = rewrite_responses(&mut broker_read, &mut client_write, &from, &to) => {}
                    }
                });
            }
        });
        Self {
            address,
            cut,
            connections,
            stop,
        }
    }

    /// The bootstrap address clients should use.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let mut token = self.connections.lock().expect("proxy lock");
        token.cancel();
        *token = CancellationToken::new();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for KafkaProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.connections.lock().expect("proxy lock").cancel();
    }
}

/// The host as the broker writes it in metadata, followed by the port (INT32).
fn advertised_bytes(host: String, port: u16) -> Vec<u8> {
    let mut bytes = host.into_bytes();
    bytes.extend_from_slice(&i32::from(port).to_be_bytes());
    bytes
}

async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) -> std::io::Result<()> {
    tokio::io::copy(&mut from, &mut to).await.map(|_| ())
}

/// Copies size-prefixed response frames, replacing `from` with `to` in each.
async fn rewrite_responses(
    broker: &mut OwnedReadHalf,
    client: &mut OwnedWriteHalf,
    from: &[u8],
    to: &[u8],
) -> std::io::Result<()> {
    loop {
        let size = broker.read_i32().await?;
        let mut frame = vec![0; usize::try_from(size).expect("frame size")];
        broker.read_exact(&mut frame).await?;
        let mut at = 0;
        while let Some(found) = frame[at..].windows(from.len()).position(|w| w == from) {
            frame[at + found..at + found + to.len()].copy_from_slice(to);
            at += found + to.len();
        }
        client.write_i32(size).await?;
        client.write_all(&frame).await?;
    }
}
