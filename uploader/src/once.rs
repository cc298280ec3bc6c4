//! `--once`: upload what `ready/` and `journal/` hold now, then stop;
//! fails naming the captures and journal segments left behind.

use crate::errors::RunError;
use crate::find::{self, Capture};
use crate::journal;
use crate::pipeline::Pipeline;
use crate::ship::Shipper;

pub async fn run(shipper: &Shipper) -> Result<(), RunError> {
    let pipeline = Pipeline::start(shipper);
    pipeline.rescan();
    let failed = pipeline.close_and_wait().await;
    let journal_left = journal::ship_pending(shipper).await;
    let mut left: Vec<String> = find::scan(&shipper.config.spool)
        .unwrap_or_default()
        .captures
        .iter()
        .map(Capture::file_name)
        .collect();
    left.extend(journal_left);
    if !left.is_empty() || !failed.is_empty() {
        return Err(RunError::LeftBehind(if left.is_empty() {
            failed
        } else {
            left
        }));
    }
    tracing::info!("everything in ready/ was uploaded");
    Ok(())
}
