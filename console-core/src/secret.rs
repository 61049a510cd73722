//! Secrets held in memory only: never printed by `Debug`/`Display`, wiped when dropped.

use std::fmt;

use zeroize::Zeroizing;

/// A credential (registry token, PEM key, API token). Its `Debug` output is `Secret(***)`, so a
/// secret inside any logged structure stays hidden; the bytes are zeroed on drop.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret itself; call only where it is handed to the system that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A new random token: `bytes` bytes from the OS's random source, as hex.
    pub fn random_hex(bytes: usize) -> std::io::Result<Secret> {
        use std::io::Read;
        let mut b = Zeroizing::new(vec![0u8; bytes]);
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        let mut s = Zeroizing::new(String::with_capacity(bytes * 2));
        for x in b.iter() {
            s.push_str(&format!("{x:02x}"));
        }
        Ok(Secret(s))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Replaces every occurrence of each non-trivial secret in `text` with `***` (command output is
/// stored and shown; a tool that echoes its input must not leak a token through it).
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        // Very short values would redact ordinary words; real tokens and keys are long.
        if s.expose().len() >= 6 {
            out = out.replace(s.expose(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("value-under-test");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(Secret(***))");
        assert_eq!(s.expose(), "value-under-test");
    }

    #[test]
    fn redact_replaces_every_occurrence() {
        let s = Secret::new("hunter22-token");
        let t = redact("a hunter22-token b hunter22-token", &[&s]);
        assert_eq!(t, "a *** b ***");
        assert_eq!(redact("abc", &[&Secret::new("ab")]), "abc");
    }
}
