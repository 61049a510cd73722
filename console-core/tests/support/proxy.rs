//! A TCP proxy on 127.0.0.1 that can cut every connection on demand, to simulate an SSH connection
//! dropped mid-deploy. Thread-based: one accept thread, two copy threads per connection.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub struct TcpProxy {
    pub port: u16,
    pub target: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    target: SocketAddr,
    cut: AtomicBool,
    /// Bytes are read and dropped: the peer sees a silent link (no FIN, no RST).
    frozen: AtomicBool,
    stop: AtomicBool,
    accepted: AtomicUsize,
    next_id: AtomicU64,
    /// Live connections: (client side, upstream side), clones used only to shut them down.
    live: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
}

impl Shared {
    fn cut_all(&self) {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for (client, upstream) in live.values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

impl TcpProxy {
    /// Listens on 127.0.0.1:<free port> and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("TcpProxy: bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let shared = Arc::new(Shared {
            target,
            cut: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        });
        let s = shared.clone();
        let accept_thread = thread::Builder::new()
            .name(format!("tcp-proxy-{port}"))
            .spawn(move || accept_loop(listener, s))
            .expect("spawn proxy thread");
        TcpProxy {
            port,
            target,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// "127.0.0.1:PORT" of the proxy.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Closes every live connection now (both directions, both sides) and closes new connections
    /// as soon as they are accepted, until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.cut_all();
    }

    /// Forwards new connections again (and un-freezes).
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
        self.shared.frozen.store(false, Ordering::SeqCst);
    }

    /// Keeps every connection open but silently drops all bytes in both directions, like a link
    /// that went dark: only keepalives or timeouts can notice.
    pub fn freeze(&self) {
        self.shared.frozen.store(true, Ordering::SeqCst);
    }

    /// How many connections the proxy has accepted so far (cut ones included).
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many connections are being forwarded right now.
    pub fn live_connections(&self) -> usize {
        self.shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.cut_all();
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = conn else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.cut.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let upstream = match TcpStream::connect_timeout(&shared.target, Duration::from_secs(5)) {
            Ok(u) => u,
            Err(_) => {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        ) else {
            continue;
        };
        {
            let mut live = shared.live.lock().unwrap_or_else(|e| e.into_inner());
            // A cut() between the check above and here must still close this one.
            if shared.cut.load(Ordering::SeqCst) {
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
                continue;
            }
            live.insert(id, (c3, u3));
        }
        let done = Arc::new(AtomicUsize::new(0));
        for (from, to) in [(client, u2), (upstream, c2)] {
            let shared = shared.clone();
            let done = done.clone();
            thread::spawn(move || {
                pipe(from, to, &shared.frozen);
                // The second direction to finish forgets the connection.
                if done.fetch_add(1, Ordering::SeqCst) == 1 {
                    shared
                        .live
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                }
            });
        }
    }
}

/// Copies `from` to `to` until EOF or an error, then half-closes `to` (or closes both on error).
fn pipe(mut from: TcpStream, mut to: TcpStream, frozen: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(_) if frozen.load(Ordering::SeqCst) => {}
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
