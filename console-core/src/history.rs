//! Deployment history in SQLite: every deployment (direct, through GitHub, rollback, automatic
//! rollback) with its steps, and an audit log a person can read. Schema changes are numbered
//! migrations tracked in `PRAGMA user_version`; a database from a newer console is refused.
//! One running deployment per target is enforced by a unique index, so two consoles sharing a
//! database cannot race either.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

const MIGRATIONS: &[&str] = &[
    // 1: deployments, steps, audit log.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE deployments (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        image TEXT NOT NULL,
        tag TEXT NOT NULL,
        digest TEXT,
        trigger TEXT NOT NULL CHECK (trigger IN ('direct','github','rollback','auto-rollback')),
        github_run_id INTEGER,
        rollback_of INTEGER REFERENCES deployments(id),
        status TEXT NOT NULL CHECK (status IN ('running','succeeded','failed')),
        health TEXT NOT NULL DEFAULT 'unknown' CHECK (health IN ('unknown','ready','unready')),
        error TEXT,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER
     );
     CREATE UNIQUE INDEX one_running_deployment_per_target ON deployments(target) WHERE status = 'running';
     CREATE INDEX deployments_by_target ON deployments(target, id);
     CREATE TABLE steps (
        deployment_id INTEGER NOT NULL REFERENCES deployments(id),
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        command TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        exit_code INTEGER,
        status TEXT NOT NULL CHECK (status IN ('running','ok','failed')),
        output TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (deployment_id, seq)
     );
     CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        target TEXT NOT NULL,
        deployment_id INTEGER,
        message TEXT NOT NULL
     );",
    // 2: the alert rules a person set for a target (no row: the served model's defaults).
    "CREATE TABLE alert_rules (
        target TEXT PRIMARY KEY,
        rules TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
     );",
    // 3: fleet rollouts, one per deploy across a fleet, with a row per host action (the host's own
    // deployment is an ordinary row of `deployments`, under the host's target name).
    "CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        fleet TEXT NOT NULL,
        tag TEXT NOT NULL,
        strategy TEXT NOT NULL CHECK (strategy IN ('rolling','canary')),
        status TEXT NOT NULL CHECK (status IN ('running','succeeded','failed','rolled-back')),
        error TEXT,
        verdict TEXT,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER
     );
     CREATE UNIQUE INDEX one_running_rollout_per_fleet ON rollouts(fleet) WHERE status = 'running';
     CREATE TABLE rollout_hosts (
        rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
        seq INTEGER NOT NULL,
        host TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('deploy','rollback')),
        deployment_id INTEGER REFERENCES deployments(id),
        status TEXT NOT NULL CHECK (status IN ('running','succeeded','failed')),
        detail TEXT,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        PRIMARY KEY (rollout_id, seq)
     );",
    // 4: resizing a fleet is a rollout too (`scale`), its host actions `add` and `remove`. SQLite
    // cannot change a CHECK constraint: both tables are made again and their rows copied (renaming
    // `rollouts` points `rollout_hosts`' reference at the old table, so both old tables go).
    "DROP INDEX one_running_rollout_per_fleet;
     ALTER TABLE rollouts RENAME TO rollouts_v3;
     ALTER TABLE rollout_hosts RENAME TO rollout_hosts_v3;
     CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY,
        fleet TEXT NOT NULL,
        tag TEXT NOT NULL,
        strategy TEXT NOT NULL CHECK (strategy IN ('rolling','canary','scale')),
        status TEXT NOT NULL CHECK (status IN ('running','succeeded','failed','rolled-back')),
        error TEXT,
        verdict TEXT,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER
     );
     CREATE UNIQUE INDEX one_running_rollout_per_fleet ON rollouts(fleet) WHERE status = 'running';
     CREATE TABLE rollout_hosts (
        rollout_id INTEGER NOT NULL REFERENCES rollouts(id),
        seq INTEGER NOT NULL,
        host TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('deploy','rollback','add','remove')),
        deployment_id INTEGER REFERENCES deployments(id),
        status TEXT NOT NULL CHECK (status IN ('running','succeeded','failed')),
        detail TEXT,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        PRIMARY KEY (rollout_id, seq)
     );
     INSERT INTO rollouts SELECT * FROM rollouts_v3;
     INSERT INTO rollout_hosts SELECT * FROM rollout_hosts_v3;
     DROP TABLE rollout_hosts_v3;
     DROP TABLE rollouts_v3;",
];

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("deployment history database {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("deployment history database {path} has schema version {found}, newer than this console understands ({known}); use a newer console")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("a deployment is already running on target `{target}` (deployment #{id}, {tag})")]
    Busy {
        target: String,
        id: i64,
        tag: String,
    },
    #[error("deployment history: {0}")]
    Sql(#[from] rusqlite::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Direct,
    Github,
    Rollback,
    AutoRollback,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Direct => "direct",
            Trigger::Github => "github",
            Trigger::Rollback => "rollback",
            Trigger::AutoRollback => "auto-rollback",
        }
    }
    fn parse(s: &str) -> Trigger {
        match s {
            "github" => Trigger::Github,
            "rollback" => Trigger::Rollback,
            "auto-rollback" => Trigger::AutoRollback,
            _ => Trigger::Direct,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub target: String,
    pub image: String,
    pub tag: String,
    pub digest: Option<String>,
    pub trigger: Trigger,
    pub github_run_id: Option<i64>,
    pub rollback_of: Option<i64>,
    /// running, succeeded or failed
    pub status: String,
    /// unknown, ready or unready
    pub health: String,
    pub error: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub seq: i64,
    pub name: String,
    pub command: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub exit_code: Option<i64>,
    pub status: String,
    pub output: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub target: String,
    pub deployment_id: Option<i64>,
    pub message: String,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct History {
    pub(crate) conn: Mutex<Connection>,
}

impl History {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| HistoryError::Open {
                path: shown.clone(),
                detail: e.to_string(),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| HistoryError::Open {
            path: shown.clone(),
            detail: e.to_string(),
        })?;
        Self::init(conn, &shown)
    }

    /// Where the console keeps its history: `$XDG_DATA_HOME/mlops-console/history.sqlite`, else
    /// `~/.local/share/mlops-console/history.sqlite` (the app's data directory on Linux).
    pub fn default_path() -> Option<std::path::PathBuf> {
        let base = std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/share"))
            })?;
        Some(base.join("mlops-console").join("history.sqlite"))
    }

    pub fn in_memory() -> Result<History, HistoryError> {
        Self::init(Connection::open_in_memory()?, ":memory:")
    }

    fn init(mut conn: Connection, shown: &str) -> Result<History, HistoryError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(HistoryError::TooNew {
                path: shown.into(),
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(History {
            conn: Mutex::new(conn),
        })
    }

    pub fn schema_version(&self) -> Result<i64, HistoryError> {
        Ok(self
            .conn
            .lock()
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// The alert rules set for `target` (a JSON list as the service takes it), if any were.
    pub fn alert_rules(&self, target: &str) -> Result<Option<String>, HistoryError> {
        Ok(self
            .conn
            .lock()
            .unwrap()
            .query_row(
                "SELECT rules FROM alert_rules WHERE target = ?1",
                [target],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Keeps `rules` (a JSON list) for `target`, or forgets them (`None`: the defaults again).
    pub fn set_alert_rules(&self, target: &str, rules: Option<&str>) -> Result<(), HistoryError> {
        let c = self.conn.lock().unwrap();
        match rules {
            Some(r) => c.execute(
                "INSERT INTO alert_rules (target, rules, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (target) DO UPDATE SET rules = excluded.rules, updated_at_ms = excluded.updated_at_ms",
                params![target, r, now_ms()],
            )?,
            None => c.execute("DELETE FROM alert_rules WHERE target = ?1", [target])?,
        };
        Ok(())
    }

    /// A value kept in the meta table, if one was set.
    pub fn meta(&self, key: &str) -> Result<Option<String>, HistoryError> {
        Ok(self
            .conn
            .lock()
            .unwrap()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Keeps `value` under `key` in the meta table, replacing what was there.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), HistoryError> {
        self.conn.lock().unwrap().execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// A value kept in the meta table, created with `init` the first time it is asked for.
    pub fn meta_or_init(
        &self,
        key: &str,
        init: impl FnOnce() -> String,
    ) -> Result<String, HistoryError> {
        let c = self.conn.lock().unwrap();
        if let Some(v) = c
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?
        {
            return Ok(v);
        }
        let v = init();
        c.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![key, v],
        )?;
        Ok(v)
    }

    /// Records a new running deployment; fails with [`HistoryError::Busy`] if the target has one.
    pub fn begin(
        &self,
        target: &str,
        image: &str,
        tag: &str,
        trigger: Trigger,
        rollback_of: Option<i64>,
    ) -> Result<i64, HistoryError> {
        let c = self.conn.lock().unwrap();
        let r = c.execute(
            "INSERT INTO deployments (target, image, tag, trigger, rollback_of, status, started_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
            params![target, image, tag, trigger.as_str(), rollback_of, now_ms()],
        );
        match r {
            Ok(_) => Ok(c.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let (id, tag): (i64, String) = c.query_row(
                    "SELECT id, tag FROM deployments WHERE target = ?1 AND status = 'running'",
                    [target],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                Err(HistoryError::Busy {
                    target: target.into(),
                    id,
                    tag,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn set_digest(&self, id: i64, digest: &str) -> Result<(), HistoryError> {
        self.conn.lock().unwrap().execute(
            "UPDATE deployments SET digest = ?2 WHERE id = ?1",
            params![id, digest],
        )?;
        Ok(())
    }

    pub fn set_github_run(&self, id: i64, run_id: i64) -> Result<(), HistoryError> {
        self.conn.lock().unwrap().execute(
            "UPDATE deployments SET github_run_id = ?2 WHERE id = ?1",
            params![id, run_id],
        )?;
        Ok(())
    }

    pub fn set_health(&self, id: i64, health: &str) -> Result<(), HistoryError> {
        self.conn.lock().unwrap().execute(
            "UPDATE deployments SET health = ?2 WHERE id = ?1",
            params![id, health],
        )?;
        Ok(())
    }

    /// Ends a deployment: `succeeded` or `failed` with the reason.
    pub fn finish(
        &self,
        id: i64,
        succeeded: bool,
        error: Option<&str>,
    ) -> Result<(), HistoryError> {
        let c = self.conn.lock().unwrap();
        c.execute(
            "UPDATE deployments SET status = ?2, error = ?3, finished_at_ms = ?4 WHERE id = ?1",
            params![
                id,
                if succeeded { "succeeded" } else { "failed" },
                error,
                now_ms()
            ],
        )?;
        // A step still marked running when its deployment ends was cut off.
        c.execute(
            "UPDATE steps SET status = 'failed', finished_at_ms = ?2 WHERE deployment_id = ?1 AND status = 'running'",
            params![id, now_ms()],
        )?;
        Ok(())
    }

    pub fn step_started(&self, id: i64, name: &str, command: &str) -> Result<i64, HistoryError> {
        let c = self.conn.lock().unwrap();
        let seq: i64 = c.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE deployment_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        c.execute(
            "INSERT INTO steps (deployment_id, seq, name, command, started_at_ms, status) VALUES (?1, ?2, ?3, ?4, ?5, 'running')",
            params![id, seq, name, command, now_ms()],
        )?;
        Ok(seq)
    }

    pub fn step_finished(
        &self,
        id: i64,
        seq: i64,
        ok: bool,
        exit_code: Option<i32>,
        output: &str,
    ) -> Result<(), HistoryError> {
        self.conn.lock().unwrap().execute(
            "UPDATE steps SET status = ?3, exit_code = ?4, output = ?5, finished_at_ms = ?6 WHERE deployment_id = ?1 AND seq = ?2",
            params![id, seq, if ok { "ok" } else { "failed" }, exit_code, output, now_ms()],
        )?;
        Ok(())
    }

    pub fn audit(
        &self,
        target: &str,
        deployment_id: Option<i64>,
        message: &str,
    ) -> Result<(), HistoryError> {
        self.conn.lock().unwrap().execute(
            "INSERT INTO audit (at_ms, target, deployment_id, message) VALUES (?1, ?2, ?3, ?4)",
            params![now_ms(), target, deployment_id, message],
        )?;
        Ok(())
    }

    pub fn deployment(&self, id: i64) -> Result<Option<Deployment>, HistoryError> {
        let c = self.conn.lock().unwrap();
        Ok(c.query_row(
            &format!("{SELECT_DEPLOYMENT} WHERE id = ?1"),
            [id],
            row_to_deployment,
        )
        .optional()?)
    }

    /// Newest first.
    pub fn deployments(&self, target: &str, limit: usize) -> Result<Vec<Deployment>, HistoryError> {
        let c = self.conn.lock().unwrap();
        let mut st = c.prepare(&format!(
            "{SELECT_DEPLOYMENT} WHERE target = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(params![target, limit as i64], row_to_deployment)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The deployment now serving on `target`: the newest that ended ready.
    pub fn serving(&self, target: &str) -> Result<Option<Deployment>, HistoryError> {
        let c = self.conn.lock().unwrap();
        Ok(c
            .query_row(
                &format!("{SELECT_DEPLOYMENT} WHERE target = ?1 AND status = 'succeeded' AND health = 'ready' ORDER BY id DESC LIMIT 1"),
                [target],
                row_to_deployment,
            )
            .optional()?)
    }

    /// Healthy versions of `target`, newest first, one entry per tag.
    pub fn healthy_versions(&self, target: &str) -> Result<Vec<Deployment>, HistoryError> {
        let all = {
            let c = self.conn.lock().unwrap();
            let mut st = c.prepare(&format!(
                "{SELECT_DEPLOYMENT} WHERE target = ?1 AND status = 'succeeded' AND health = 'ready' ORDER BY id DESC"
            ))?;
            let rows = st.query_map([target], row_to_deployment)?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let mut seen = HashSet::new();
        Ok(all
            .into_iter()
            .filter(|d| seen.insert(d.tag.clone()))
            .collect())
    }

    /// Every tag ever deployed to `target`.
    pub fn deployed_tags(&self, target: &str) -> Result<HashSet<String>, HistoryError> {
        let c = self.conn.lock().unwrap();
        let mut st = c.prepare("SELECT DISTINCT tag FROM deployments WHERE target = ?1")?;
        let rows = st.query_map([target], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn steps(&self, id: i64) -> Result<Vec<Step>, HistoryError> {
        let c = self.conn.lock().unwrap();
        let mut st = c.prepare(
            "SELECT seq, name, command, started_at_ms, finished_at_ms, exit_code, status, output FROM steps WHERE deployment_id = ?1 ORDER BY seq",
        )?;
        let rows = st.query_map([id], |r| {
            Ok(Step {
                seq: r.get(0)?,
                name: r.get(1)?,
                command: r.get(2)?,
                started_at_ms: r.get(3)?,
                finished_at_ms: r.get(4)?,
                exit_code: r.get(5)?,
                status: r.get(6)?,
                output: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Oldest first.
    pub fn audit_log(&self, target: &str) -> Result<Vec<AuditEntry>, HistoryError> {
        let c = self.conn.lock().unwrap();
        let mut st = c.prepare(
            "SELECT at_ms, target, deployment_id, message FROM audit WHERE target = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([target], |r| {
            Ok(AuditEntry {
                at_ms: r.get(0)?,
                target: r.get(1)?,
                deployment_id: r.get(2)?,
                message: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks deployments left `running` by a console that died as failed (called at start-up,
    /// when this process holds no deployment).
    pub fn fail_abandoned(&self) -> Result<usize, HistoryError> {
        let c = self.conn.lock().unwrap();
        let now = now_ms();
        c.execute(
            "UPDATE rollout_hosts SET status = 'failed', detail = 'abandoned: the console stopped', finished_at_ms = ?1
             WHERE status = 'running'",
            [now],
        )?;
        c.execute(
            "UPDATE rollouts SET status = 'failed', error = 'abandoned: the console stopped during this rollout', finished_at_ms = ?1
             WHERE status = 'running'",
            [now],
        )?;
        Ok(c.execute(
            "UPDATE deployments SET status = 'failed', error = 'abandoned: the console stopped during this deployment', finished_at_ms = ?1
             WHERE status = 'running'",
            [now],
        )?)
    }
}

const SELECT_DEPLOYMENT: &str = "SELECT id, target, image, tag, digest, trigger, github_run_id, rollback_of, status, health, error, started_at_ms, finished_at_ms FROM deployments";

fn row_to_deployment(r: &rusqlite::Row<'_>) -> rusqlite::Result<Deployment> {
    Ok(Deployment {
        id: r.get(0)?,
        target: r.get(1)?,
        image: r.get(2)?,
        tag: r.get(3)?,
        digest: r.get(4)?,
        trigger: Trigger::parse(&r.get::<_, String>(5)?),
        github_run_id: r.get(6)?,
        rollback_of: r.get(7)?,
        status: r.get(8)?,
        health: r.get(9)?,
        error: r.get(10)?,
        started_at_ms: r.get(11)?,
        finished_at_ms: r.get(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let h = History::open(&path).unwrap();
        assert_eq!(h.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(h);
        // Re-opening applies nothing and keeps data.
        let h = History::open(&path).unwrap();
        let id = h.begin("t", "img", "v1", Trigger::Direct, None).unwrap();
        h.finish(id, true, None).unwrap();
        drop(h);
        let h = History::open(&path).unwrap();
        assert_eq!(h.deployments("t", 10).unwrap().len(), 1);
        h.conn
            .lock()
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(h);
        let e = History::open(&path).err().unwrap();
        assert!(e.to_string().contains("schema version 99"), "{e}");
    }

    #[test]
    fn fleet_rollouts_of_schema_3_survive_the_migration_that_allows_scaling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "foreign_keys", "ON").unwrap();
            for sql in &MIGRATIONS[..3] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 3).unwrap();
            c.execute_batch(
                "INSERT INTO rollouts (fleet, tag, strategy, status, verdict, started_at_ms, finished_at_ms)
                   VALUES ('prod', 'v2', 'canary', 'rolled-back', '{}', 1, 2);
                 INSERT INTO rollout_hosts (rollout_id, seq, host, action, status, started_at_ms)
                   VALUES (1, 1, 'h1', 'deploy', 'failed', 1);",
            )
            .unwrap();
            assert!(c
                .execute("INSERT INTO rollouts (fleet, tag, strategy, status, started_at_ms) VALUES ('prod', 'v2', 'scale', 'running', 3)", [])
                .is_err());
        }
        let h = History::open(&path).unwrap();
        assert_eq!(h.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let old = h.rollout(1).unwrap().unwrap();
        assert_eq!(
            (old.strategy.as_str(), old.status.as_str()),
            ("canary", "rolled-back")
        );
        assert_eq!(h.rollout_hosts(1).unwrap()[0].host, "h1");
        let id = h.begin_rollout("prod", "v2", "scale").unwrap();
        assert!(
            h.begin_rollout("prod", "v3", "rolling").is_err(),
            "still one running per fleet"
        );
        let seq = h.rollout_host_started(id, "h4", "add").unwrap();
        h.rollout_host_finished(id, seq, None, true, None).unwrap();
        h.rollout_host_started(id, "h4", "remove").unwrap();
        assert!(
            h.rollout_host_started(99, "h1", "add").is_err(),
            "the reference holds"
        );
    }

    #[test]
    fn alert_rules_are_kept_per_target_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let h = History::open(&path).unwrap();
        assert_eq!(h.alert_rules("sandbox").unwrap(), None);
        h.set_alert_rules("sandbox", Some("[1]")).unwrap();
        h.set_alert_rules("sandbox", Some("[2]")).unwrap();
        h.set_alert_rules("host-a", Some("[3]")).unwrap();
        drop(h);
        let h = History::open(&path).unwrap();
        assert_eq!(h.alert_rules("sandbox").unwrap().as_deref(), Some("[2]"));
        assert_eq!(h.alert_rules("host-a").unwrap().as_deref(), Some("[3]"));
        h.set_alert_rules("sandbox", None).unwrap();
        assert_eq!(h.alert_rules("sandbox").unwrap(), None);
        assert_eq!(h.alert_rules("host-a").unwrap().as_deref(), Some("[3]"));
    }

    #[test]
    fn one_running_deployment_per_target() {
        let h = History::in_memory().unwrap();
        let a = h.begin("prod", "img", "v1", Trigger::Direct, None).unwrap();
        let e = h
            .begin("prod", "img", "v2", Trigger::Direct, None)
            .unwrap_err();
        assert!(matches!(e, HistoryError::Busy { id, .. } if id == a), "{e}");
        assert!(e.to_string().contains(&format!("#{a}")));
        h.begin("staging", "img", "v2", Trigger::Direct, None)
            .unwrap();
        h.finish(a, false, Some("boom")).unwrap();
        h.begin("prod", "img", "v2", Trigger::Direct, None).unwrap();
    }

    #[test]
    fn serving_and_healthy_versions_follow_health() {
        let h = History::in_memory().unwrap();
        for (tag, ok) in [("v1", true), ("v2", true), ("v3", false), ("v1", true)] {
            let id = h.begin("t", "img", tag, Trigger::Direct, None).unwrap();
            h.set_health(id, if ok { "ready" } else { "unready" })
                .unwrap();
            h.finish(id, ok, None).unwrap();
        }
        assert_eq!(h.serving("t").unwrap().unwrap().tag, "v1");
        let tags: Vec<_> = h
            .healthy_versions("t")
            .unwrap()
            .into_iter()
            .map(|d| d.tag)
            .collect();
        assert_eq!(tags, ["v1", "v2"]);
    }

    #[test]
    fn finishing_closes_cut_off_steps() {
        let h = History::in_memory().unwrap();
        let id = h.begin("t", "img", "v1", Trigger::Direct, None).unwrap();
        let s = h.step_started(id, "pull", "docker-compose pull").unwrap();
        h.finish(id, false, Some("connection lost")).unwrap();
        let steps = h.steps(id).unwrap();
        assert_eq!((steps[0].seq, steps[0].status.as_str()), (s, "failed"));
        assert_eq!(
            h.deployment(id).unwrap().unwrap().error.as_deref(),
            Some("connection lost")
        );
    }
}
