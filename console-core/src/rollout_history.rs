//! Fleet rollouts in the history database: one row per rollout (a deploy across a fleet) and one
//! per host action in it (deploy or rollback), each pointing at the host's own deployment.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::history::{now_ms, History, HistoryError};

#[derive(Clone, Debug, Serialize)]
pub struct Rollout {
    pub id: i64,
    pub fleet: String,
    pub tag: String,
    /// `rolling` or `canary`.
    pub strategy: String,
    /// `running`, `succeeded`, `failed` (stopped, hosts left as they were) or `rolled-back` (stopped,
    /// every host returned to the version it served before).
    pub status: String,
    pub error: Option<String>,
    /// A canary's verdict and the figures it rests on (JSON, see [`crate::canary::Verdict`]).
    pub verdict: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RolloutHost {
    pub seq: i64,
    pub host: String,
    /// `deploy` or `rollback`.
    pub action: String,
    pub deployment_id: Option<i64>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub detail: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

impl History {
    /// Records a rollout as running; refused while another runs on the same fleet.
    pub fn begin_rollout(
        &self,
        fleet: &str,
        tag: &str,
        strategy: &str,
    ) -> Result<i64, HistoryError> {
        let c = self.conn.lock().unwrap();
        let running: Option<(i64, String)> = c
            .query_row(
                "SELECT id, tag FROM rollouts WHERE fleet = ?1 AND status = 'running'",
                [fleet],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((id, tag)) = running {
            return Err(HistoryError::Busy {
                target: fleet.into(),
                id,
                tag,
            });
        }
        c.execute(
            "INSERT INTO rollouts (fleet, tag, strategy, status, started_at_ms) VALUES (?1, ?2, ?3, 'running', ?4)",
            params![fleet, tag, strategy, now_ms()],
        )?;
        Ok(c.last_insert_rowid())
    }

    pub fn finish_rollout(
        &self,
        id: i64,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), HistoryError> {
        self.conn.lock().unwrap().execute(
            "UPDATE rollouts SET status = ?2, error = ?3, finished_at_ms = ?4 WHERE id = ?1",
            params![id, status, error, now_ms()],
        )?;
        Ok(())
    }

    /// Keeps a canary's verdict (JSON) with rollout `id`.
    pub fn set_rollout_verdict(&self, id: i64, verdict: &str) -> Result<(), HistoryError> {
        self.conn.lock().unwrap().execute(
            "UPDATE rollouts SET verdict = ?2 WHERE id = ?1",
            params![id, verdict],
        )?;
        Ok(())
    }

    /// Starts the next host action of rollout `id`; returns its sequence number.
    pub fn rollout_host_started(
        &self,
        id: i64,
        host: &str,
        action: &str,
    ) -> Result<i64, HistoryError> {
        let c = self.conn.lock().unwrap();
        let seq: i64 = c.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM rollout_hosts WHERE rollout_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        c.execute(
            "INSERT INTO rollout_hosts (rollout_id, seq, host, action, status, started_at_ms) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
            params![id, seq, host, action, now_ms()],
        )?;
        Ok(seq)
    }

    pub fn rollout_host_finished(
        &self,
        id: i64,
        seq: i64,
        deployment_id: Option<i64>,
        ok: bool,
        detail: Option<&str>,
    ) -> Result<(), HistoryError> {
        self.conn.lock().unwrap().execute(
            "UPDATE rollout_hosts SET deployment_id = ?3, status = ?4, detail = ?5, finished_at_ms = ?6
             WHERE rollout_id = ?1 AND seq = ?2",
            params![
                id,
                seq,
                deployment_id,
                if ok { "succeeded" } else { "failed" },
                detail,
                now_ms()
            ],
        )?;
        Ok(())
    }

    pub fn rollout(&self, id: i64) -> Result<Option<Rollout>, HistoryError> {
        let c = self.conn.lock().unwrap();
        Ok(c.query_row(
            &format!("{SELECT_ROLLOUT} WHERE id = ?1"),
            [id],
            row_to_rollout,
        )
        .optional()?)
    }

    /// The fleet's rollouts, newest first.
    pub fn rollouts(&self, fleet: &str, limit: usize) -> Result<Vec<Rollout>, HistoryError> {
        let c = self.conn.lock().unwrap();
        let mut st = c.prepare(&format!(
            "{SELECT_ROLLOUT} WHERE fleet = ?1 ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = st.query_map(params![fleet, limit as i64], row_to_rollout)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Rollout `id`'s host actions in order.
    pub fn rollout_hosts(&self, id: i64) -> Result<Vec<RolloutHost>, HistoryError> {
        let c = self.conn.lock().unwrap();
        let mut st = c.prepare(
            "SELECT seq, host, action, deployment_id, status, detail, started_at_ms, finished_at_ms
             FROM rollout_hosts WHERE rollout_id = ?1 ORDER BY seq",
        )?;
        let rows = st.query_map([id], |r| {
            Ok(RolloutHost {
                seq: r.get(0)?,
                host: r.get(1)?,
                action: r.get(2)?,
                deployment_id: r.get(3)?,
                status: r.get(4)?,
                detail: r.get(5)?,
                started_at_ms: r.get(6)?,
                finished_at_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const SELECT_ROLLOUT: &str = "SELECT id, fleet, tag, strategy, status, error, verdict, started_at_ms, finished_at_ms FROM rollouts";

fn row_to_rollout(r: &rusqlite::Row<'_>) -> rusqlite::Result<Rollout> {
    Ok(Rollout {
        id: r.get(0)?,
        fleet: r.get(1)?,
        tag: r.get(2)?,
        strategy: r.get(3)?,
        status: r.get(4)?,
        error: r.get(5)?,
        verdict: r.get(6)?,
        started_at_ms: r.get(7)?,
        finished_at_ms: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_keeps_its_host_actions_in_order_and_one_runs_per_fleet() {
        let h = History::in_memory().unwrap();
        let id = h.begin_rollout("prod", "v2", "rolling").unwrap();
        assert!(matches!(
            h.begin_rollout("prod", "v3", "rolling"),
            Err(HistoryError::Busy { id: i, .. }) if i == id
        ));
        h.begin_rollout("other", "v3", "canary").unwrap();
        let a = h.rollout_host_started(id, "h1", "deploy").unwrap();
        let b = h.rollout_host_started(id, "h2", "deploy").unwrap();
        h.rollout_host_finished(id, a, None, true, None).unwrap();
        h.rollout_host_finished(id, b, None, false, Some("gate failed"))
            .unwrap();
        let c = h.rollout_host_started(id, "h1", "rollback").unwrap();
        assert_eq!((a, b, c), (1, 2, 3));
        h.finish_rollout(id, "rolled-back", Some("h2: gate failed"))
            .unwrap();
        h.set_rollout_verdict(id, r#"{"promote":false}"#).unwrap();
        let hosts = h.rollout_hosts(id).unwrap();
        let seen: Vec<(&str, &str, &str)> = hosts
            .iter()
            .map(|x| (x.host.as_str(), x.action.as_str(), x.status.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("h1", "deploy", "succeeded"),
                ("h2", "deploy", "failed"),
                ("h1", "rollback", "running")
            ]
        );
        let r = h.rollout(id).unwrap().unwrap();
        assert_eq!((r.status.as_str(), r.tag.as_str()), ("rolled-back", "v2"));
        assert_eq!(r.verdict.as_deref(), Some(r#"{"promote":false}"#));
        // A console that died mid-rollout leaves nothing running.
        assert_eq!(h.fail_abandoned().unwrap(), 0);
        assert_eq!(h.rollout_hosts(id).unwrap()[2].status, "failed");
        assert_eq!(h.rollouts("other", 5).unwrap()[0].status, "failed");
        h.begin_rollout("prod", "v3", "rolling").unwrap();
    }
}
