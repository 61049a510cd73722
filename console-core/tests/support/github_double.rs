//! The GitHub double (`tests/doubles/github_double.py`) as a child process, for the Rust tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

/// The token the double accepts, made fresh for each test process.
pub fn token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| super::test_token("gh-test-token"))
}

pub struct Double {
    child: Child,
    pub port: u16,
}

impl Drop for Double {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> String {
    match std::env::var("MLOPS_VENV") {
        Ok(v) if !v.is_empty() => format!("{v}/bin/python"),
        _ => "python3".into(),
    }
}

impl Double {
    pub fn start() -> Option<Double> {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/doubles/github_double.py"
        );
        let spawned = Command::new(python())
            .args([script, "--token-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return skip(&format!("cannot start {}: {e}", python())),
        };
        // The token reaches the double on stdin, not on its command line.
        writeln!(child.stdin.as_mut().unwrap(), "{}", token()).unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(port) = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            return skip(&format!("the GitHub double did not start (is PyNaCl installed? scripts/setup.sh installs it): {line:?}"));
        };
        let d = Double { child, port };
        d.post("/_double/repos", json!({"full_name": "acme/inference"}));
        d.post(
            "/_double/repos",
            json!({"full_name": "acme/read-only", "can_write": false}),
        );
        Some(d)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let data = body.map(|b| b.to_string()).unwrap_or_default();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{data}", data.len()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let r = console_core::health::parse_response(&raw).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    }

    pub fn post(&self, path: &str, body: Value) -> Value {
        self.request("POST", path, Some(body))
    }

    pub fn state(&self) -> Value {
        self.request("GET", "/_double/state", None)
    }

    pub fn fault(&self, method: &str, path_re: &str, status: u16, headers: Value, times: i64) {
        self.post("/_double/faults", json!({"method": method, "path_re": path_re, "status": status, "headers": headers,
            "body": {"message": format!("fault {status}"), "documentation_url": "https://docs.github.com/rest"}, "times": times}));
    }
}

fn skip(why: &str) -> Option<Double> {
    if std::env::var("MLOPS_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}
