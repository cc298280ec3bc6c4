//! `--check`: the configuration is valid (already, or `run` would not have
//! got here), credentials resolve and the bucket answers the probe.

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
        if !spool_check::spool_exists(&config.spool) {
            println!(
                "note: spool folder {} does not exist here; the uploader would refuse to start (mount the spool volume there)",
                config.spool.root().display()
            );
        }
    }
    Ok(())
}
