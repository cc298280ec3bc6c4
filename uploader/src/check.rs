//! `--check`: the configuration is valid (already, or `run` would not have
//! got here), credentials resolve and the bucket answers the probe; in
//! pinned mode, the pins can be listed.

use chrono::Utc;

use crate::config::Config;
use crate::errors::RunError;
use crate::keys::KeyContext;
use crate::{s3, spool_check};

pub async fn run(
    config: &Config,
    client: &aws_sdk_s3::Client,
    ctx: &KeyContext,
    credentials: s3::CredentialSource,
) -> Result<(), RunError> {
    s3::probe(client, &config.s3, &config.key_template).await?;
    let pins = if config.upload_mode.is_pinned() {
        Some(pins_readable(client, config).await?)
    } else {
        None
    };
    let confirms = s3::confirms_checksums(client, &config.s3, &config.key_template).await;
    let example = spool::CaptureName::new(Utc::now(), 0);
    #[allow(clippy::print_stdout)]
    {
        match confirms {
            Ok(true) => {}
            Ok(false) => println!("note: {}", s3::UNCONFIRMED_CHECKSUMS),
            Err(e) => println!("note: could not learn whether the store confirms checksums ({e})"),
        }
        println!(
            "ok: bucket {:?} accepts uploads with credentials from {credentials}; a capture starting now would go to {:?}",
            config.s3.bucket,
            config.key_template.render(ctx, &example)
        );
        if let Some(listed) = pins {
            println!(
                "ok: pinned mode: the pins under {:?} are readable ({listed} listed)",
                bucket::pins::pins_prefix(config.key_template.static_prefix())
            );
        }
        if !spool_check::spool_exists(&config.spool) {
            println!(
                "note: spool folder {} does not exist here; the uploader would refuse to start (mount the spool volume there)",
                config.spool.root().display()
            );
        }
    }
    Ok(())
}

/// Pinned mode: one list of the pins' prefix, as the poll does.
async fn pins_readable(client: &aws_sdk_s3::Client, config: &Config) -> Result<usize, RunError> {
    let prefix = bucket::pins::pins_prefix(config.key_template.static_prefix());
    let listed = client
        .list_objects_v2()
        .bucket(&config.s3.bucket)
        .prefix(&prefix)
        .max_keys(100)
        .send()
        .await
        .map_err(|e| RunError::PinsUnreadable {
            prefix: prefix.clone(),
            error: crate::failure::classify("ListObjectsV2 (pins)", &e),
        })?;
    Ok(listed.contents().len())
}
