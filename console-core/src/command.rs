//! A command as data: program, arguments, working directory, environment and stdin. Deploy steps
//! are built as these values (unit tests assert them exactly) and run by an executor, locally or
//! over SSH. Secrets travel only on stdin, never in argv or the environment.

use std::fmt;

use crate::secret::Secret;

/// What a command reads on stdin.
#[derive(Clone, Debug, Default)]
pub enum Stdin {
    #[default]
    Null,
    /// Ordinary data (a compose file, an env file).
    Data(Vec<u8>),
    /// A credential; shown as `<secret>` in every rendering of the command.
    Secret(Secret),
}

#[derive(Clone, Debug)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    /// Extra environment variables (non-secret values only).
    pub env: Vec<(String, String)>,
    pub stdin: Stdin,
}

impl Command {
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            stdin: Stdin::Null,
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(items.into_iter().map(Into::into));
        self
    }

    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn stdin(mut self, s: Stdin) -> Self {
        self.stdin = s;
        self
    }

    /// argv: the program followed by its arguments.
    pub fn argv(&self) -> Vec<&str> {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect()
    }

    /// One POSIX shell command line (what an SSH `exec` request carries): `cd DIR && env K=V prog args`,
    /// every word single-quoted. Contains no secret because commands never carry one outside stdin.
    pub fn to_shell(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        if !self.env.is_empty() {
            words.push("env".into());
            for (k, v) in &self.env {
                words.push(format!("{k}={}", quote(v)));
            }
        }
        words.extend(self.argv().into_iter().map(quote));
        let line = words.join(" ");
        match &self.cwd {
            Some(dir) => format!("cd {} && {line}", quote(dir)),
            None => line,
        }
    }
}

impl fmt::Display for Command {
    /// The shell line plus a note on stdin; this is what the audit log and the step record show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_shell())?;
        match &self.stdin {
            Stdin::Null => Ok(()),
            Stdin::Data(d) => write!(f, " <stdin: {} bytes>", d.len()),
            Stdin::Secret(_) => f.write_str(" <stdin: secret>"),
        }
    }
}

/// Single-quotes a word for a POSIX shell unless it is made only of safe characters.
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_line_quotes_what_needs_it() {
        let c = Command::new("docker-compose")
            .args(["up", "-d"])
            .cwd("/srv/my app")
            .env("IMAGE_TAG", "v1");
        assert_eq!(
            c.to_shell(),
            "cd '/srv/my app' && env IMAGE_TAG=v1 docker-compose up -d"
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn display_never_shows_a_secret_stdin() {
        let c = Command::new("docker")
            .args(["login", "ghcr.io"])
            .stdin(Stdin::Secret(Secret::new("token-under-test")));
        let shown = format!("{c} {c:?}");
        assert!(shown.contains("<stdin: secret>"), "{shown}");
        assert!(!shown.contains("token-under-test"), "{shown}");
    }
}
