//! Sending one capture to S3: a single PutObject for small files, a
//! multipart upload for large ones. Bodies stream from disk (memory stays
//! bounded whatever the file size) and every request carries the SHA-256
//! computed beforehand, so the store itself refuses a body that changed on
//! the way. No aws-chunked trailers are needed, which keeps S3-compatible
//! stores working.
//!
//! A multipart upload keeps its resume record in `state/` (see `state.rs`);
//! each attempt starts by asking S3 which parts it already holds, so a retry
//! after an outage or a restart sends only the missing parts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use futures::{StreamExt as _, TryStreamExt as _};
use tokio::sync::Semaphore;

use crate::config::{S3Settings, Sse};
use crate::errors::UploadError;
use crate::failure::{self, FailureKind};
use crate::hash::{FileDigest, base64};
use crate::state::{self, UploadRecord};
use crate::verify::{self, Verified};

const CONTENT_TYPE: &str = "application/vnd.tcpdump.pcap";
/// Read size of request bodies: the SDK's default (4 KiB) costs a system
/// call per 4 KiB; this keeps memory per request small and bounded.
const READ_BUFFER: usize = 256 * 1024;

/// One capture on its way: where it is, where it goes, what it holds.
#[derive(Debug)]
pub struct Job<'a> {
    /// The descriptor that was hashed; every body is read from it, never
    /// from the path again (which could have been replaced by a symlink).
    pub file: &'a std::fs::File,
    pub path: &'a Path,
    pub key: &'a str,
    pub digest: &'a FileDigest,
    pub metadata: &'a HashMap<String, String>,
    /// The resume record path (used by multipart uploads only).
    pub record: PathBuf,
}

/// Sends captures; shared by all workers.
#[derive(Debug, Clone)]
pub struct Sender {
    client: Client,
    settings: Arc<S3Settings>,
    /// Bounds the requests with a body in flight, whole files and parts alike.
    requests: Arc<Semaphore>,
    concurrency: usize,
}

impl Sender {
    pub fn new(client: Client, settings: S3Settings, concurrency: usize) -> Self {
        Self {
            client,
            settings: Arc::new(settings),
            requests: Arc::new(Semaphore::new(concurrency)),
            concurrency,
        }
    }

    fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// Uploads a small capture in one request and verifies the checksum S3
    /// returns.
    pub async fn put_single(&self, job: &Job<'_>) -> Result<Verified, UploadError> {
        let _permit = self.requests.acquire().await.map_err(closed)?;
        let body = ByteStream::read_from()
            .file(reopen(job.file).map_err(local)?)
            .buffer_size(READ_BUFFER)
            .length(Length::Exact(job.digest.size))
            .build()
            .await
            .map_err(local)?;
        let put = Put {
            key: job.key,
            body,
            size: job.digest.size,
            sha256: &job.digest.sha256,
            content_type: CONTENT_TYPE,
            metadata: Some(job.metadata.clone()),
            operation: "PutObject",
        };
        self.put_object(put).await
    }

    /// Uploads a capture's flow index (small, in memory) in one request,
    /// checked by its SHA-256 like the capture.
    pub async fn put_index(&self, key: &str, gz: &[u8]) -> Result<Verified, UploadError> {
        use sha2::Digest as _;
        let _permit = self.requests.acquire().await.map_err(closed)?;
        let sha256: crate::hash::Sha256Digest = sha2::Sha256::digest(gz).into();
        let put = Put {
            key,
            body: ByteStream::from(gz.to_vec()),
            size: gz.len() as u64,
            sha256: &sha256,
            content_type: flows::schema::INDEX_CONTENT_TYPE,
            metadata: None,
            operation: "PutObject (flow index)",
        };
        self.put_object(put).await
    }

    /// One PutObject with its SHA-256 for S3 to check, the storage settings
    /// every upload carries, and the store's answer verified.
    async fn put_object(&self, put: Put<'_>) -> Result<Verified, UploadError> {
        let storage = self.storage_settings();
        let output = self
            .client
            .put_object()
            .bucket(self.bucket())
            .key(put.key)
            .body(put.body)
            .content_length(to_i64(put.size))
            .content_type(put.content_type)
            .checksum_sha256(base64(put.sha256))
            .set_metadata(put.metadata)
            .set_storage_class(storage.class)
            .set_server_side_encryption(storage.encryption)
            .set_ssekms_key_id(storage.kms_key_id)
            .send()
            .await
            .map_err(|e| failure::classify(put.operation, &e))?;
        verify::single(put.sha256, output.checksum_sha256())
    }

    /// Uploads a large capture in parts, resuming an upload in progress, and
    /// verifies the composite checksum S3 returns.
    pub async fn multipart(&self, job: &Job<'_>) -> Result<Verified, UploadError> {
        let (upload_id, done) = match self.resume(job).await? {
            Some(in_progress) => in_progress,
            None => (self.create(job).await?, vec![None; job.digest.parts.len()]),
        };
        let parts = self.send_parts(job, &upload_id, done).await?;
        self.complete(job, &upload_id, parts).await
    }

    /// The upload in progress for this capture, with the parts S3 holds
    /// that match what we hashed; `None` when there is nothing to resume.
    async fn resume(
        &self,
        job: &Job<'_>,
    ) -> Result<Option<(String, Vec<Option<CompletedPart>>)>, UploadError> {
        let digest = job.digest;
        let Some(record) = state::load(&job.record) else {
            return Ok(None);
        };
        if !record.matches(
            self.bucket(),
            job.key,
            digest.size,
            digest.part_size,
            &digest.sha256_hex(),
        ) {
            tracing::info!(record = %job.record.display(), "resume record is for other content; starting over");
            self.forget(job);
            return Ok(None);
        }
        let mut done: Vec<Option<CompletedPart>> = vec![None; digest.parts.len()];
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(self.bucket())
                .key(job.key)
                .upload_id(&record.upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let error = failure::classify("ListParts", &e);
                    if error.kind == FailureKind::NoSuchUpload {
                        tracing::info!(key = job.key, upload_id = %record.upload_id, "S3 no longer knows the upload; starting over");
                        self.forget(job);
                        return Ok(None);
                    }
                    return Err(error);
                }
            };
            for part in page.parts() {
                let Some(number) = part.part_number() else {
                    continue;
                };
                let Some(index) = usize::try_from(number - 1).ok().filter(|i| *i < done.len())
                else {
                    continue;
                };
                let expected = base64(&digest.parts[index]);
                let same_size = part.size() == Some(to_i64(part_len(digest, index)));
                if part.checksum_sha256() == Some(expected.as_str()) && same_size {
                    done[index] = Some(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(part.e_tag().map(str::to_owned))
                            .checksum_sha256(expected)
                            .build(),
                    );
                }
            }
            marker = page.next_part_number_marker().map(str::to_owned);
            if page.is_truncated() != Some(true) || marker.is_none() {
                break;
            }
        }
        let have = done.iter().filter(|p| p.is_some()).count();
        tracing::info!(key = job.key, upload_id = %record.upload_id, parts_held = have, parts = done.len(), "resuming multipart upload");
        Ok(Some((record.upload_id, done)))
    }

    /// Storage class and encryption, the same for single and multipart uploads.
    fn storage_settings(&self) -> StorageSettings {
        let (encryption, kms_key_id) = match &self.settings.sse {
            Some(Sse::Aes256) => (Some(ServerSideEncryption::Aes256), None),
            Some(Sse::Kms { key_id }) => (Some(ServerSideEncryption::AwsKms), key_id.clone()),
            None => (None, None),
        };
        StorageSettings {
            class: self
                .settings
                .storage_class
                .as_deref()
                .map(StorageClass::from),
            encryption,
            kms_key_id,
        }
    }

    async fn create(&self, job: &Job<'_>) -> Result<String, UploadError> {
        let storage = self.storage_settings();
        let output = self
            .client
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(job.key)
            .content_type(CONTENT_TYPE)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_metadata(Some(job.metadata.clone()))
            .set_storage_class(storage.class)
            .set_server_side_encryption(storage.encryption)
            .set_ssekms_key_id(storage.kms_key_id)
            .send()
            .await
            .map_err(|e| failure::classify("CreateMultipartUpload", &e))?;
        let upload_id = output
            .upload_id()
            .ok_or_else(|| {
                UploadError::new(
                    FailureKind::Server,
                    "CreateMultipartUpload returned no upload id",
                )
            })?
            .to_owned();
        let digest = job.digest;
        let record = UploadRecord::new(
            self.bucket(),
            job.key,
            &upload_id,
            digest.size,
            digest.part_size,
            &digest.sha256_hex(),
        );
        // Without the record a restart would only cost a new upload; the
        // abandoned one is cleaned up by the bucket's lifecycle rule.
        if let Err(e) = state::save(&job.record, &record) {
            tracing::warn!(record = %job.record.display(), error = %e, "cannot write resume record");
        }
        Ok(upload_id)
    }

    /// Sends every part not yet held, with bounded concurrency.
    async fn send_parts(
        &self,
        job: &Job<'_>,
        upload_id: &str,
        mut done: Vec<Option<CompletedPart>>,
    ) -> Result<Vec<CompletedPart>, UploadError> {
        let missing: Vec<usize> = (0..done.len()).filter(|i| done[*i].is_none()).collect();
        let sent: Vec<(usize, CompletedPart)> = futures::stream::iter(missing)
            .map(|index| async move {
                let part = self.send_part(job, upload_id, index).await?;
                Ok::<_, UploadError>((index, part))
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        for (index, part) in sent {
            done[index] = Some(part);
        }
        Ok(done.into_iter().flatten().collect())
    }

    async fn send_part(
        &self,
        job: &Job<'_>,
        upload_id: &str,
        index: usize,
    ) -> Result<CompletedPart, UploadError> {
        let _permit = self.requests.acquire().await.map_err(closed)?;
        let digest = job.digest;
        let length = part_len(digest, index);
        let body = ByteStream::read_from()
            .file(reopen(job.file).map_err(local)?)
            .buffer_size(READ_BUFFER)
            .offset(digest.part_size * index as u64)
            .length(Length::Exact(length))
            .build()
            .await
            .map_err(local)?;
        let number = part_number(index);
        let checksum = base64(&digest.parts[index]);
        let output = self
            .client
            .upload_part()
            .bucket(self.bucket())
            .key(job.key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(to_i64(length))
            .checksum_sha256(&checksum)
            .body(body)
            .send()
            .await
            .map_err(|e| self.on_upload_error(job, "UploadPart", &e))?;
        tracing::debug!(key = job.key, part = number, bytes = length, "part sent");
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(output.e_tag().map(str::to_owned))
            .checksum_sha256(checksum)
            .build())
    }

    async fn complete(
        &self,
        job: &Job<'_>,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<Verified, UploadError> {
        let output = self
            .client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(job.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.on_upload_error(job, "CompleteMultipartUpload", &e))?;
        // The upload id is spent either way.
        self.forget(job);
        verify::multipart(&job.digest.parts, output.checksum_sha256())
    }

    fn on_upload_error<E>(
        &self,
        job: &Job<'_>,
        operation: &str,
        e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> UploadError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let error = failure::classify(operation, e);
        if error.kind == FailureKind::NoSuchUpload {
            self.forget(job);
        }
        error
    }

    fn forget(&self, job: &Job<'_>) {
        if let Err(e) = state::remove(&job.record) {
            tracing::warn!(record = %job.record.display(), error = %e, "cannot remove resume record");
        }
    }
}

/// A new descriptor of the same open file, with an offset of its own (parts
/// are read concurrently), through `/proc/self/fd`: it names the inode the
/// descriptor holds, not whatever is at the capture's path now.
pub fn reopen(file: &std::fs::File) -> std::io::Result<tokio::fs::File> {
    use std::os::fd::AsRawFd as _;
    let again = std::fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    Ok(tokio::fs::File::from_std(again))
}

fn part_len(digest: &FileDigest, index: usize) -> u64 {
    let start = digest.part_size * index as u64;
    digest.part_size.min(digest.size.saturating_sub(start))
}

fn part_number(index: usize) -> i32 {
    i32::try_from(index + 1).unwrap_or(i32::MAX)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn local(e: impl std::fmt::Display) -> UploadError {
    UploadError::new(FailureKind::LocalIo, format!("reading the capture: {e}"))
}

fn closed(_: tokio::sync::AcquireError) -> UploadError {
    UploadError::new(FailureKind::LocalIo, "shutting down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_is_read_from_the_hashed_descriptor_not_a_symlink_swapped_in_after() {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("20261127T142503Z.pcap");
        let secret = dir.path().join("secret");
        std::fs::write(&capture, b"the capture that was hashed").unwrap();
        std::fs::write(&secret, b"a file outside the spool").unwrap();
        let (file, _) = crate::hash::hash_file(&capture, None, None).unwrap();
        std::fs::remove_file(&capture).unwrap();
        std::os::unix::fs::symlink(&secret, &capture).unwrap();
        let body = ByteStream::read_from()
            .file(reopen(&file).unwrap())
            .build()
            .await
            .unwrap();
        let sent = body.collect().await.unwrap().into_bytes();
        assert_eq!(&sent[..], b"the capture that was hashed");
    }
}

/// One single-request upload.
#[derive(Debug)]
struct Put<'a> {
    key: &'a str,
    body: ByteStream,
    size: u64,
    sha256: &'a crate::hash::Sha256Digest,
    content_type: &'static str,
    metadata: Option<HashMap<String, String>>,
    /// The operation's name in errors and logs.
    operation: &'static str,
}

/// What every upload request asks of S3's storage.
#[derive(Debug)]
struct StorageSettings {
    class: Option<StorageClass>,
    encryption: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
}
