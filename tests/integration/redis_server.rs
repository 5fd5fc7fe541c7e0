//! A real `redis-server` on a loopback port of its own, for the breaker tests:
//! started with no persistence, killed (by pid) on drop, restartable on its port.
//! Debian's package is installed when missing and root (as `.ci/run` does).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::eventually;

pub struct RedisServer {
    pub port: u16,
    /// `redis-server`, or `valkey-server` (the same protocol and scripts).
    binary: &'static str,
    child: Option<Child>,
    /// TLS only (`--port 0 --tls-port PORT`), with a password: the files and the password.
    tls: Option<(std::path::PathBuf, String)>,
}

/// `redis-server`, installed once under a lock when missing and root.
fn tools() {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        crate::helpers::debian_tools(
            &["redis-server", "redis-cli"],
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null",
        );
    });
}

/// `valkey-server`, installed once under a lock when missing and root: from the
/// distribution, else (Debian 12) from bookworm-backports.
fn valkey() {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        crate::helpers::debian_tools(
            &["valkey-server"],
            include_str!("../../.ci/install-valkey.sh"),
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
            binary: "redis-server",
            child: None,
            tls: None,
        };
        server.restart();
        server
    }

    /// A Valkey server instead (Debian's `valkey-server`, from bookworm-backports on
    /// Debian 12: installed when missing and root, as `.ci/run` does).
    pub fn start_valkey() -> RedisServer {
        tools();
        valkey();
        let mut server = RedisServer {
            port: free_port(),
            binary: "valkey-server",
            child: None,
            tls: None,
        };
        server.restart();
        server
    }

    /// A server that speaks only TLS, with a certificate for 127.0.0.1 signed by a CA
    /// made in `dir` (`dir/ca.pem`, for the client to trust), and `password` required.
    pub fn start_tls(dir: &std::path::Path, password: &str) -> RedisServer {
        tools();
        make_certificates(dir);
        let mut server = RedisServer {
            port: free_port(),
            binary: "redis-server",
            child: None,
            tls: Some((dir.to_path_buf(), password.to_string())),
        };
        server.restart();
        server
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn restart(&mut self) {
        let mut cmd = Command::new(self.binary);
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some((dir, password)) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-auth-clients", "no", "--requirepass", password])
                .arg("--tls-cert-file")
                .arg(dir.join("server.pem"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("ca.pem")),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1"])
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
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some((dir, password)) = &self.tls {
            cmd.args(["--tls", "--no-auth-warning", "-a", password])
                .arg("--cacert")
                .arg(dir.join("ca.pem"));
        }
        cmd.args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// A CA, and a server certificate for IP 127.0.0.1 it signed, made with openssl.
fn make_certificates(dir: &std::path::Path) {
    let script = "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=backstop test CA' \
        && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' \
        && printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf \
        && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf";
    let made = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        made,
        "openssl could not make the test certificates (apt-get install openssl)"
    );
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
