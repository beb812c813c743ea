//! A bound Unix datagram socket drained by a thread: the stand-in for the
//! service manager's `NOTIFY_SOCKET` and for journald's socket (a sender
//! blocks once a few datagrams wait, so it must be drained).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Every datagram received on a socket, raw, in order.
pub struct Datagrams {
    /// Socket path.
    pub path: PathBuf,
    /// Every datagram received.
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Tells the reader to stop.
    stop: Arc<AtomicBool>,
    /// The reader.
    reader: Option<JoinHandle<()>>,
}

impl Datagrams {
    /// Binds `path` and reads datagrams of up to `max` bytes until dropped.
    pub fn bind(path: &Path, max: usize) -> Datagrams {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let got = Arc::clone(&got);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; max];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        got.lock().unwrap().push(buf[..n].to_vec());
                    }
                }
            })
        };
        Datagrams {
            path: path.to_path_buf(),
            got,
            stop,
            reader: Some(reader),
        }
    }

    /// The datagrams received so far.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Datagrams {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
