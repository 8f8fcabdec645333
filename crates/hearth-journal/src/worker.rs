//! The NLP job: analyses entries after they are written.
//!
//! The work list is the rows themselves: an entry is pending while its `nlp_analysis` row is
//! missing or names another entry version or analyser version ([`hearth_store_sql::journal::pending`]).
//! Those rows commit with the entry, so the job is durable without a queue of its own: after a
//! crash or a restart, or on another process, the next run finds the same work. An analysis is
//! stored only if its entry is still at the version analysed, so an edit racing the job is
//! analysed again, never overwritten by the old words. Two processes may analyse the same entry
//! at the same moment; both store the same result (the analysis is a pure function of the words).

use std::sync::{Arc, Weak};
use std::time::Duration;

use hearth_store_sql::journal as sql;

use crate::Journal;
use crate::nlp::{ANALYSER_VERSION, analyse};

/// Entries analysed per round.
const BATCH: i64 = 50;

/// Analyses up to one batch of pending entries; answers how many were stored.
pub async fn run_once(app: &Journal) -> Result<usize, hearth_store::StoreError> {
    let pending = sql::pending(&*app.db, ANALYSER_VERSION, BATCH).await?;
    let mut stored = 0;
    for p in pending {
        let analysis = analyse(&p.words);
        let detail = serde_json::to_string(&analysis).map_err(|e| hearth_store::StoreError::Corrupt(e.to_string()))?;
        let row = sql::AnalysisRow {
            entry_id: p.id.clone(),
            patient: p.patient,
            entry_version: p.version,
            analyser_version: ANALYSER_VERSION.to_owned(),
            sentiment_status: analysis.sentiment_status.clone(),
            compound: analysis.sentiment.as_ref().map(|s| s.compound),
            symptoms: analysis.symptoms.iter().filter(|s| !s.negated).map(|s| s.code.clone()).collect(),
            detail,
            analysed_at: app.clock.now().timestamp_millis(),
        };
        if sql::save_analysis(&*app.db, &row).await? {
            stored += 1;
        }
    }
    if stored > 0 {
        tracing::info!(entries = stored, analyser = ANALYSER_VERSION, "journal entries analysed");
    }
    Ok(stored)
}

/// Runs the job while the workflow lives: woken by each write, and every `nlp_interval_secs`
/// for entries another process wrote or a run left behind.
pub(crate) fn start(app: &Arc<Journal>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let weak: Weak<Journal> = Arc::downgrade(app);
    let every = Duration::from_secs(app.config.nlp_interval_secs);
    runtime.spawn(async move {
        loop {
            let Some(app) = weak.upgrade() else { return };
            loop {
                match run_once(&app).await {
                    Ok(n) if n as i64 >= BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "the journal NLP job failed; it tries again");
                        break;
                    }
                }
            }
            // Holds the state for at most one interval after the app is gone; then the upgrade fails.
            let _ = tokio::time::timeout(every, app.wake.notified()).await;
        }
    });
}
