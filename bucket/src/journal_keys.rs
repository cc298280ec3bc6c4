//! Journal keys: reserved for the uploader's journal objects, which later
//! work adds (none are written today). They will live here, beside the
//! capture and index keys, under the key template's static prefix, in a
//! folder of their own that neither a capture key nor an index key can
//! produce (capture keys end in a capture file name, index keys live under
//! [`crate::index_keys::INDEX_DIR`]).

/// The folder under the key template's static prefix reserved for journal
/// objects. Nothing is written there yet.
pub const JOURNAL_DIR: &str = "journal/";
