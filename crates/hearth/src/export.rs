//! `hearth export`: writes the live resources of the configured database as NDJSON, one file
//! per type (`<dir>/<Type>.ndjson`), streaming in batches (memory stays flat).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use hearth_server::bulk_export::Exporter;
use hearth_store::{ExportScan, ResourceStore};

pub async fn run(
    store: Arc<dyn ResourceStore>,
    dir: &Path,
    types: Option<Vec<String>>,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), String> {
    let started = Instant::now();
    let scan = ExportScan { types, since, patients: None, after: 0, limit: hearth_server::bulk_export::BATCH };
    let mut exporter = Exporter::new(dir, scan).await.map_err(|e| e.to_string())?;
    let mut last = Instant::now();
    while exporter.step(&*store).await.map_err(|e| e.to_string())? {
        if last.elapsed().as_secs() >= 1 {
            eprintln!("export: {} resources", exporter.exported);
            last = Instant::now();
        }
    }
    let total = exporter.exported;
    let files = exporter.finish().await.map_err(|e| e.to_string())?;
    for f in &files {
        eprintln!("{:>8}  {}", f.count, dir.join(&f.file).display());
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "export done: {total} resources in {} files, {secs:.1} s ({:.0} resources/s)",
        files.len(),
        total as f64 / secs.max(0.001)
    );
    Ok(())
}
