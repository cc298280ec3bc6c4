//! The layout record: a small JSON object the uploader writes at start under
//! its key template's static prefix, so that a reader of the bucket (the
//! `captures` CLI) finds the layout without being told the template.
//!
//! ```text
//! <static prefix>.s3-tcpdump-layout.json
//! {"schema":1,"key_template":"tcp-dumps/{node}/{yyyy}/{mm}/{dd}/{hh}/{file}","index_prefix":"tcp-dumps/index/"}
//! ```
//!
//! The name starts with `.`, so it is never a capture's file name, and the
//! IAM policy that lets the uploader write under its prefix covers it.

use serde::{Deserialize, Serialize};

use crate::capture_keys::{KeyError, KeyTemplate};
use crate::index_keys::INDEX_DIR;

/// Name of the record, under the key template's static prefix.
pub const LAYOUT_OBJECT: &str = ".s3-tcpdump-layout.json";

/// The version of the record's fields written by this build. A reader
/// refuses a newer one rather than guess at it.
pub const LAYOUT_SCHEMA: u32 = 1;

/// The record's content type.
pub const LAYOUT_CONTENT_TYPE: &str = "application/json";

/// A layout record that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutRecordError {
    #[error("layout record is not valid JSON of the expected fields: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error(
        "layout record has schema {found}, newer than this build reads ({LAYOUT_SCHEMA}); use a newer captures, or pass --key-template"
    )]
    NewerSchema { found: u32 },
    #[error("layout record names an invalid key template: {0}")]
    Template(#[from] KeyError),
}

/// What a bucket's layout is, as the uploader that wrote it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutRecord {
    pub schema: u32,
    /// The uploader's `S3_KEY_TEMPLATE`.
    pub key_template: String,
    /// Where the flow index objects are (`<static prefix>index/`).
    pub index_prefix: String,
}

impl LayoutRecord {
    /// The record for `template`.
    pub fn for_template(template: &KeyTemplate) -> Self {
        Self {
            schema: LAYOUT_SCHEMA,
            key_template: template.as_str().to_owned(),
            index_prefix: format!("{}{INDEX_DIR}", template.static_prefix()),
        }
    }

    /// The record's key: beside the objects it describes.
    pub fn key(template: &KeyTemplate) -> String {
        format!("{}{LAYOUT_OBJECT}", template.static_prefix())
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and a number always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record and the template it names, refusing a newer schema.
    pub fn parse(bytes: &[u8]) -> Result<(Self, KeyTemplate), LayoutRecordError> {
        let record: Self = serde_json::from_slice(bytes)?;
        if record.schema > LAYOUT_SCHEMA {
            return Err(LayoutRecordError::NewerSchema {
                found: record.schema,
            });
        }
        let template = KeyTemplate::parse(&record.key_template)?;
        Ok((record, template))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_record_reads_back_as_the_template_it_was_written_for() {
        let template =
            KeyTemplate::parse("traces/{cluster}/{node}/{yyyy}{mm}{dd}/{hh}-{file}").unwrap();
        let record = LayoutRecord::for_template(&template);
        assert_eq!(
            LayoutRecord::key(&template),
            "traces/.s3-tcpdump-layout.json"
        );
        assert_eq!(record.index_prefix, "traces/index/");
        let (read, read_template) = LayoutRecord::parse(&record.to_json()).unwrap();
        assert_eq!(read, record);
        assert_eq!(read_template, template);
    }

    #[test]
    fn a_newer_schema_is_refused_naming_the_fallback() {
        let json = br#"{"schema":2,"key_template":"{node}/{file}","index_prefix":"index/"}"#;
        let err = LayoutRecord::parse(json).unwrap_err().to_string();
        assert!(
            err.contains("schema 2") && err.contains("--key-template"),
            "{err}"
        );
    }
}
