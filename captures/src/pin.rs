//! Pins for the flight recorder (`UPLOAD_MODE=pinned`): making one
//! (`captures pin`, and the Alertmanager receiver), writing it to the
//! bucket, listing and deleting them. The pin's schema and key are the
//! `bucket` crate's ([`bucket::pins`]); every uploader in pinned mode reads
//! them from there.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bucket::pins::{PIN_CONTENT_TYPE, PIN_SCHEMA, Pin, PinError, PinSelection, pin_id, pin_key};
use chrono::{DateTime, TimeDelta, Utc};

use crate::window::{TimeError, parse_time};

/// How long a pin lives by default: a week (its captures are in the bucket
/// long before; the pin object is the record of why).
pub const DEFAULT_TTL: TimeDelta = TimeDelta::days(7);

/// A pin that could not be made, read, written or deleted.
#[derive(Debug, thiserror::Error)]
pub enum PinStoreError {
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error("{0:?} is not a time to live: a number and a unit (s, m, h, d), e.g. --ttl 7d")]
    Ttl(String),
    #[error("cannot {action} s3://{bucket}/{key}: {detail}")]
    Store {
        action: &'static str,
        bucket: String,
        key: String,
        detail: String,
    },
}

/// What a pin is made of, before it has an id.
#[derive(Debug, Clone)]
pub struct PinRequest {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub selection: PinSelection,
    pub reason: String,
    pub created_by: String,
    pub ttl: TimeDelta,
}

impl PinRequest {
    /// The pin, made at `now`, its id from `seed` (the same seed and
    /// window give the same id: see [`pin_id`]). Validated.
    pub fn into_pin(self, now: DateTime<Utc>, seed: &str) -> Result<Pin, PinError> {
        let expires_at = (now + self.ttl).max(self.to);
        let pin = Pin {
            schema: PIN_SCHEMA,
            id: pin_id(self.from, &format!("{seed}|{}|{}", self.from, self.to)),
            from: self.from,
            to: self.to,
            selection: self.selection,
            reason: self.reason,
            created_at: now,
            created_by: self.created_by,
            expires_at,
        };
        pin.validate()?;
        Ok(pin)
    }
}

/// A moment: RFC 3339, `now`, or relative to now, back (`-10m`) or ahead
/// (`+5m`).
pub fn parse_moment(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, TimeError> {
    match text.trim().strip_prefix('+') {
        Some(ahead) => {
            let back = parse_time(&format!("-{ahead}"), now)?;
            Ok(now + (now - back))
        }
        None => parse_time(text, now),
    }
}

/// A time to live: `30m`, `12h`, `7d`.
pub fn parse_ttl(text: &str) -> Result<TimeDelta, PinStoreError> {
    let now = Utc::now();
    let back = parse_time(&format!("-{}", text.trim()), now)
        .map_err(|_| PinStoreError::Ttl(text.to_owned()))?;
    let ttl = now - back;
    if ttl <= TimeDelta::zero() {
        return Err(PinStoreError::Ttl(text.to_owned()));
    }
    Ok(ttl)
}

/// Writes a pin to `<prefix>pins/<id>.json`; returns its key.
pub async fn write(
    client: &Client,
    bucket: &str,
    prefix: &str,
    pin: &Pin,
) -> Result<String, PinStoreError> {
    pin.validate()?;
    let key = pin_key(prefix, &pin.id);
    client
        .put_object()
        .bucket(bucket)
        .key(&key)
        .content_type(PIN_CONTENT_TYPE)
        .body(ByteStream::from(pin.to_json()))
        .send()
        .await
        .map_err(|e| store_error("write the pin", bucket, &key, &e))?;
    Ok(key)
}

/// One listed pin: its key, and the pin or why it cannot be read.
#[derive(Debug)]
pub struct Listed {
    pub key: String,
    pub pin: Result<Pin, String>,
}

/// The pins under `<prefix>pins/` (at most [`bucket::pins::MAX_PINS`]).
pub async fn list(
    client: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<Listed>, PinStoreError> {
    let folder = bucket::pins::pins_prefix(prefix);
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&folder)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| store_error("list the pins under", bucket, &folder, &e))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .filter(|k| k.ends_with(".json"))
                .map(str::to_owned),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() || keys.len() >= bucket::pins::MAX_PINS {
            break;
        }
    }
    keys.truncate(bucket::pins::MAX_PINS);
    let mut listed = Vec::with_capacity(keys.len());
    for key in keys {
        let pin = read(client, bucket, &key).await;
        listed.push(Listed { key, pin });
    }
    Ok(listed)
}

async fn read(client: &Client, bucket: &str, key: &str) -> Result<Pin, String> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot read it: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })?;
    if out
        .content_length()
        .is_some_and(|n| n > i64::try_from(bucket::pins::MAX_PIN_BYTES).unwrap_or(i64::MAX))
    {
        return Err(format!(
            "larger than the {} bytes a pin may have",
            bucket::pins::MAX_PIN_BYTES
        ));
    }
    let body = out
        .body
        .collect()
        .await
        .map_err(|e| format!("cannot read it: {e}"))?
        .into_bytes();
    Pin::parse(&body).map_err(|e| e.to_string())
}

/// Deletes the pin `id`.
pub async fn delete(
    client: &Client,
    bucket: &str,
    prefix: &str,
    id: &str,
) -> Result<String, PinStoreError> {
    let key = pin_key(prefix, id);
    client
        .delete_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| store_error("delete the pin", bucket, &key, &e))?;
    Ok(key)
}

fn store_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    action: &'static str,
    bucket: &str,
    key: &str,
    e: &aws_sdk_s3::error::SdkError<E, R>,
) -> PinStoreError {
    PinStoreError::Store {
        action,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        detail: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn moments_go_back_and_ahead_of_now() {
        let now: DateTime<Utc> = "2026-12-04T03:00:00Z".parse().unwrap();
        assert_eq!(
            parse_moment("-10m", now).unwrap(),
            "2026-12-04T02:50:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_moment("+5m", now).unwrap(),
            "2026-12-04T03:05:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_moment("+5x", now).is_err());
        assert_eq!(parse_ttl("7d").unwrap(), TimeDelta::days(7));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("week").is_err());
    }

    #[test]
    fn the_same_seed_makes_the_same_pin_id_and_a_pin_outlives_its_window() {
        let now: DateTime<Utc> = "2026-12-04T03:00:00Z".parse().unwrap();
        let request = PinRequest {
            from: now - TimeDelta::minutes(10),
            to: now + TimeDelta::minutes(5),
            selection: PinSelection::All,
            reason: "checkout errors".into(),
            created_by: "alice".into(),
            ttl: TimeDelta::minutes(1),
        };
        let a = request.clone().into_pin(now, "seed").unwrap();
        let b = request
            .clone()
            .into_pin(now + TimeDelta::seconds(30), "seed")
            .unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.expires_at, a.to, "a short ttl still covers the window");
        let c = request.into_pin(now, "other").unwrap();
        assert_ne!(a.id, c.id);
    }
}
