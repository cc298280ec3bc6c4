//! `--once`: upload what `ready/` and `journal/` hold now, then stop;
//! fails naming the captures and journal segments left behind.

use crate::errors::RunError;
use crate::find::{self, Capture};
use crate::pipeline::Pipeline;
use crate::ship::Shipper;
use crate::{journal, ring_index};

pub async fn run(shipper: &Shipper, client: &aws_sdk_s3::Client) -> Result<(), RunError> {
    if let Some(book) = &shipper.pins {
        let config = &shipper.config;
        // Pinned mode: the pins as the bucket has them now (else the local copy's).
        if let Err(e) = crate::pins::poll(
            client,
            &config.s3.bucket,
            config.key_template.static_prefix(),
            book,
            &shipper.metrics.pins,
        )
        .await
        {
            tracing::warn!(kind = %e.kind, error = %e.detail, "cannot read the pins; using the local copy");
        }
    }
    let pipeline = Pipeline::start(shipper);
    pipeline.rescan();
    let failed = pipeline.close_and_wait().await;
    let journal_left = journal::ship_pending(shipper).await;
    let indexes_left = ring_index::ship_pending(shipper).await;
    let mut left: Vec<String> = find::scan(&shipper.config.spool)
        .unwrap_or_default()
        .captures
        .iter()
        // In pinned mode the ring stays: only what a pin covers is owed.
        .filter(|c| {
            shipper
                .pins
                .as_ref()
                .is_none_or(|book| book.covering_capture(c).is_some())
        })
        .map(Capture::file_name)
        .collect();
    left.extend(journal_left);
    left.extend(
        indexes_left
            .into_iter()
            .map(|file| format!("{file} (its flow index)")),
    );
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
