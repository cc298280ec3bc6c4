//! The bucket pinned to its account: `S3_EXPECTED_BUCKET_OWNER`.
//!
//! Bucket names are global. If the captures' bucket is deleted while pods
//! run, or its name is mistyped the same way in the policy and the settings,
//! whoever holds that name receives the captures. With an expected owner,
//! every S3 request carries `x-amz-expected-bucket-owner`, and S3 refuses it
//! (403 `AccessDenied`) when another account owns the bucket.
//!
//! The header is added by an interceptor of the S3 client, before signing
//! (so it is signed too), rather than by each request builder: every call the
//! uploader makes, now or later, carries it without anyone remembering to.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::errors::ConfigError;

/// The request header S3 checks.
pub const HEADER: &str = "x-amz-expected-bucket-owner";
/// The setting's environment variable, named in messages.
pub const VARIABLE: &str = "S3_EXPECTED_BUCKET_OWNER";

/// A valid AWS account id: exactly 12 digits.
pub fn parse(value: &str) -> Result<String, ConfigError> {
    if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::BucketOwner {
            value: value.to_owned(),
        })
    }
}

/// Adds the expected owner to every request of the client it is given to.
#[derive(Debug, Clone)]
pub struct ExpectedBucketOwner {
    account: String,
}

impl ExpectedBucketOwner {
    pub fn new(account: &str) -> Self {
        Self {
            account: account.to_owned(),
        }
    }
}

impl Intercept for ExpectedBucketOwner {
    fn name(&self) -> &'static str {
        "ExpectedBucketOwner"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert(HEADER, self.account.clone());
        Ok(())
    }
}

/// What to do about an `AccessDenied` when an owner is expected: S3 gives
/// the same answer for a bucket of another account as for a missing
/// permission, so the message names both, the owner first.
pub fn access_denied_hint(account: &str, bucket: &str) -> String {
    format!(
        "either account {account} ({VARIABLE}) does not own bucket {bucket:?} — S3 refuses every request to a bucket of another account with AccessDenied: check the account id, and that the bucket was not deleted and re-created by someone else — or the permission is missing: {}",
        crate::failure::ACCESS_DENIED_PERMISSIONS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_twelve_digits_are_an_account_id() {
        assert_eq!(parse("111122223333").unwrap(), "111122223333");
        for bad in [
            "",
            "11112222333",
            "1111222233334",
            "11112222333a",
            " 111122223333",
            "arn:aws:iam::111122223333:root",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.contains(VARIABLE) && err.contains("12-digit"),
                "{bad:?}: {err}"
            );
        }
    }
}
