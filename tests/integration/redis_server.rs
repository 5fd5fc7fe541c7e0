//! A real `redis-server` on a loopback port of its own, for the breaker tests:
//! started with no persistence, killed (by pid) on drop, restartable on its port.
//! Debian's package is installed when missing and root (as `.ci/run` does).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::eventually;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

/// `redis-server`, installed once under a lock when missing and root.
fn tools() {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        let have = |c: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {c} >/dev/null")])
                .status()
                .is_ok_and(|s| s.success())
        };
        if have("redis-server") && have("redis-cli") {
            return;
        }
        let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/apt-redis.lock");
        let _ = std::fs::create_dir_all(lock.parent().expect("target/"));
        let file = std::fs::File::create(&lock).expect("create the apt lock");
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        if have("redis-server") && have("redis-cli") {
            return;
        }
        let installed = rustix::process::geteuid().is_root()
            && have("apt-get")
            && Command::new("sh")
                .args([
                    "-c",
                    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null",
                ])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            installed || have("redis-server"),
            "redis-server is needed: apt-get install redis-server (.ci/run does)"
        );
    });
}

/// A port nothing listens on now (bound and let go: redis-server needs a number).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        tools();
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let up = eventually(Duration::from_secs(10), || {
            self.cli(&["PING"]).trim() == "PONG"
        });
        assert!(up, "redis-server did not answer on port {}", self.port);
    }

    /// Kills the server (by its pid) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `redis-cli` against this server: its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
