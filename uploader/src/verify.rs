//! Did the store keep the bytes we hashed?
//!
//! The uploader has no read permission (the IAM policy grants none), so
//! verification never downloads: it compares the checksum the store returns
//! for the write with the one computed from disk. For a single request that is
//! the SHA-256 of the body; for a multipart upload it is S3's composite
//! checksum, `base64(sha256(part digests concatenated))-N`. A store that
//! returns no checksum may or may not have checked the header we sent (some
//! S3-compatible stores ignore it): that is [`Verified::Unconfirmed`], which
//! the uploader reports and counts instead of calling it verified.

use sha2::{Digest, Sha256};

use crate::failure::{FailureKind, UploadError};
use crate::hash::{Sha256Digest, base64};

/// S3's composite checksum of a multipart upload, `<base64>-<parts>`.
pub fn composite_checksum(parts: &[Sha256Digest]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    format!("{}-{}", base64(&hasher.finalize()), parts.len())
}

/// What the store's answer proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The store returned the checksum we computed.
    Confirmed,
    /// The store accepted the upload without returning a checksum.
    Unconfirmed,
}

/// Checks the checksum returned by PutObject.
pub fn single(expected: &Sha256Digest, returned: Option<&str>) -> Result<Verified, UploadError> {
    check(&base64(expected), None, returned)
}

/// Checks the checksum returned by CompleteMultipartUpload.
pub fn multipart(parts: &[Sha256Digest], returned: Option<&str>) -> Result<Verified, UploadError> {
    let composite = composite_checksum(parts);
    let bare = composite
        .rsplit_once('-')
        .map(|(b, _)| b.to_owned())
        .unwrap_or_default();
    check(&composite, Some(&bare), returned)
}

fn check(
    expected: &str,
    also: Option<&str>,
    returned: Option<&str>,
) -> Result<Verified, UploadError> {
    match returned {
        None | Some("") => Ok(Verified::Unconfirmed),
        Some(got) if got == expected || Some(got) == also => Ok(Verified::Confirmed),
        Some(got) => Err(UploadError::new(
            FailureKind::ChecksumMismatch,
            format!("store returned checksum {got}, expected {expected}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_is_hash_of_part_digests_with_count() {
        let a: Sha256Digest = Sha256::digest(b"part one").into();
        let b: Sha256Digest = Sha256::digest(b"part two").into();
        let mut concat = a.to_vec();
        concat.extend_from_slice(&b);
        let expected = format!("{}-2", base64(&Sha256::digest(&concat)));
        assert_eq!(composite_checksum(&[a, b]), expected);
    }

    #[test]
    fn mismatch_is_reported_and_absence_accepted() {
        let d: Sha256Digest = Sha256::digest(b"x").into();
        assert_eq!(single(&d, Some(&base64(&d))).unwrap(), Verified::Confirmed);
        assert_eq!(single(&d, None).unwrap(), Verified::Unconfirmed);
        let err = single(&d, Some("AAAA")).unwrap_err();
        assert_eq!(err.kind, FailureKind::ChecksumMismatch);
        let composite = composite_checksum(&[d]);
        assert!(multipart(&[d], Some(&composite)).is_ok());
        let bare = composite.trim_end_matches("-1");
        assert!(multipart(&[d], Some(bare)).is_ok());
        assert!(multipart(&[d, d], Some(&composite)).is_err());
    }
}
