//! Sending one capture to S3: a single PutObject for small files, a
//! multipart upload for large ones. Bodies stream from disk (memory stays
//! bounded whatever the file size) and every request carries the SHA-256
//! computed beforehand, so the store itself refuses a body that changed on
//! the way. No aws-chunked trailers are needed, which keeps S3-compatible
//! stores working.
//!
//! A multipart upload keeps its resume record in `state/` (see `state.rs`);
//! each attempt starts by asking S3 which parts it already holds, so a retry
//! after an outage or a restart sends only the missing parts. Each part is
//! hashed just before it is sent (the whole file was hashed once already),
//! so parts are hashed while others are on the wire; before completing, the
//! file's stamp proves the parts and the whole-file hash saw the same bytes.

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
use crate::hash::{self, FileDigest, Sha256Digest, Stamp, base64};
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
    /// S3 tags (`x-amz-tagging`, query-encoded): `pinned=true&…` for a
    /// capture a pin covers (`bucket::pins`).
    pub tagging: Option<&'a str>,
    /// The resume record path (used by multipart uploads only).
    pub record: PathBuf,
}

/// How a multipart upload cuts a file.
#[derive(Debug, Clone, Copy)]
pub struct PartPlan {
    size: u64,
    part_size: u64,
}

impl PartPlan {
    pub fn new(size: u64, part_size: u64) -> Self {
        Self {
            size,
            part_size: part_size.max(1),
        }
    }

    /// Never zero: an empty file is one empty part.
    fn count(&self) -> usize {
        usize::try_from(self.size.div_ceil(self.part_size).max(1)).unwrap_or(usize::MAX)
    }

    fn offset(&self, index: usize) -> u64 {
        self.part_size * index as u64
    }

    fn len(&self, index: usize) -> u64 {
        self.part_size
            .min(self.size.saturating_sub(self.offset(index)))
    }
}

/// A part S3 holds: what CompleteMultipartUpload names, and its digest.
#[derive(Debug, Clone)]
struct HeldPart {
    completed: CompletedPart,
    sha256: Sha256Digest,
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
            tagging: job.tagging,
            operation: "PutObject",
        };
        self.put_object(put).await
    }

    /// Uploads a capture's flow index (in memory, bounded) in one request,
    /// checked by its SHA-256 like the capture.
    /// A pinned capture's index carries the capture's tags.
    pub async fn put_index(
        &self,
        key: &str,
        gz: &bytes::Bytes,
        tagging: Option<&str>,
    ) -> Result<Verified, UploadError> {
        let object = SmallObject {
            key,
            bytes: gz.clone(),
            content_type: bucket::index_keys::INDEX_CONTENT_TYPE,
            metadata: None,
            tagging,
            operation: "PutObject (flow index)",
        };
        self.put_small(object).await
    }

    /// Uploads one identity journal segment (small, read whole) in one
    /// request, checked by its SHA-256 like a capture; its metadata carries
    /// the SHA-256 in hex and the node, as a capture's does.
    pub async fn put_journal(
        &self,
        key: &str,
        gz: &[u8],
        node: &str,
    ) -> Result<Verified, UploadError> {
        use sha2::Digest as _;
        let sha256 = bucket::hex(&sha2::Sha256::digest(gz));
        let metadata = HashMap::from([
            (bucket::object_metadata::SHA256.to_owned(), sha256),
            (bucket::object_metadata::NODE.to_owned(), node.to_owned()),
        ]);
        let object = SmallObject {
            key,
            bytes: bytes::Bytes::copy_from_slice(gz),
            content_type: bucket::journal_keys::JOURNAL_CONTENT_TYPE,
            metadata: Some(metadata),
            tagging: None,
            operation: "PutObject (journal)",
        };
        self.put_small(object).await
    }

    /// One small object from memory, with its SHA-256 for S3 to check.
    async fn put_small(&self, object: SmallObject<'_>) -> Result<Verified, UploadError> {
        use sha2::Digest as _;
        let _permit = self.requests.acquire().await.map_err(closed)?;
        let sha256: crate::hash::Sha256Digest = sha2::Sha256::digest(&object.bytes).into();
        let put = Put {
            key: object.key,
            // A cheap clone: Bytes shares its buffer with the caller's.
            body: ByteStream::from(object.bytes.clone()),
            size: object.bytes.len() as u64,
            sha256: &sha256,
            content_type: object.content_type,
            metadata: object.metadata,
            tagging: object.tagging,
            operation: object.operation,
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
            .set_tagging(put.tagging.map(str::to_owned))
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
    pub async fn multipart(&self, job: &Job<'_>, plan: PartPlan) -> Result<Verified, UploadError> {
        let (upload_id, done) = match self.resume(job, plan).await? {
            Some(in_progress) => in_progress,
            None => (self.create(job, plan).await?, vec![None; plan.count()]),
        };
        let parts = self.send_parts(job, plan, &upload_id, done).await?;
        unchanged_since_hashed(job)?;
        self.complete(job, &upload_id, parts).await
    }

    /// The upload in progress for this capture, with the parts S3 holds
    /// that match what we hashed; `None` when there is nothing to resume.
    async fn resume(
        &self,
        job: &Job<'_>,
        plan: PartPlan,
    ) -> Result<Option<(String, Vec<Option<HeldPart>>)>, UploadError> {
        let digest = job.digest;
        let Some(record) = state::load(&job.record).await else {
            return Ok(None);
        };
        if !record.matches(
            self.bucket(),
            job.key,
            digest.size,
            plan.part_size,
            &digest.sha256_hex(),
        ) {
            tracing::info!(record = %job.record.display(), "resume record is for other content; starting over");
            self.forget(job);
            return Ok(None);
        }
        let mut done: Vec<Option<HeldPart>> = vec![None; plan.count()];
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
                if part.size() != Some(to_i64(plan.len(index))) {
                    continue;
                }
                let sha256 = hash_part(job.file, plan, index).await?;
                let expected = base64(&sha256);
                if part.checksum_sha256() == Some(expected.as_str()) {
                    done[index] = Some(HeldPart {
                        completed: CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(part.e_tag().map(str::to_owned))
                            .checksum_sha256(expected)
                            .build(),
                        sha256,
                    });
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

    async fn create(&self, job: &Job<'_>, plan: PartPlan) -> Result<String, UploadError> {
        let storage = self.storage_settings();
        let output = self
            .client
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(job.key)
            .content_type(CONTENT_TYPE)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_metadata(Some(job.metadata.clone()))
            .set_tagging(job.tagging.map(str::to_owned))
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
            plan.part_size,
            &digest.sha256_hex(),
        );
        // Without the record a restart would only cost a new upload; the
        // abandoned one is cleaned up by the bucket's lifecycle rule.
        if let Err(e) = state::save(&job.record, &record).await {
            tracing::warn!(record = %job.record.display(), error = %e, "cannot write resume record");
        }
        Ok(upload_id)
    }

    /// Sends every part not yet held, with bounded concurrency.
    async fn send_parts(
        &self,
        job: &Job<'_>,
        plan: PartPlan,
        upload_id: &str,
        mut done: Vec<Option<HeldPart>>,
    ) -> Result<Vec<HeldPart>, UploadError> {
        let missing: Vec<usize> = (0..done.len()).filter(|i| done[*i].is_none()).collect();
        let sent: Vec<(usize, HeldPart)> = futures::stream::iter(missing)
            .map(|index| async move {
                let part = self.send_part(job, plan, upload_id, index).await?;
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
        plan: PartPlan,
        upload_id: &str,
        index: usize,
    ) -> Result<HeldPart, UploadError> {
        let _permit = self.requests.acquire().await.map_err(closed)?;
        let sha256 = hash_part(job.file, plan, index).await?;
        let length = plan.len(index);
        let body = ByteStream::read_from()
            .file(reopen(job.file).map_err(local)?)
            .buffer_size(READ_BUFFER)
            .offset(plan.offset(index))
            .length(Length::Exact(length))
            .build()
            .await
            .map_err(local)?;
        let number = part_number(index);
        let checksum = base64(&sha256);
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
        Ok(HeldPart {
            completed: CompletedPart::builder()
                .part_number(number)
                .set_e_tag(output.e_tag().map(str::to_owned))
                .checksum_sha256(checksum)
                .build(),
            sha256,
        })
    }

    async fn complete(
        &self,
        job: &Job<'_>,
        upload_id: &str,
        parts: Vec<HeldPart>,
    ) -> Result<Verified, UploadError> {
        let digests: Vec<Sha256Digest> = parts.iter().map(|p| p.sha256).collect();
        let completed: Vec<CompletedPart> = parts.into_iter().map(|p| p.completed).collect();
        let output = self
            .client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(job.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.on_upload_error(job, "CompleteMultipartUpload", &e))?;
        // The upload id is spent either way.
        self.forget(job);
        verify::multipart(&digests, output.checksum_sha256())
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

/// SHA-256 of one part, read from the hashed descriptor off the runtime.
async fn hash_part(
    file: &std::fs::File,
    plan: PartPlan,
    index: usize,
) -> Result<Sha256Digest, UploadError> {
    let file = file.try_clone().map_err(local)?;
    let (offset, len) = (plan.offset(index), plan.len(index));
    tokio::task::spawn_blocking(move || hash::hash_range(&file, offset, len))
        .await
        .map_err(|e| local(format!("hashing task: {e}")))?
        .map_err(local)
}

/// The parts were hashed after the whole file: they describe the same bytes
/// only if the file did not change in between. A change is handled like a
/// body the store refused: the capture is hashed again.
fn unchanged_since_hashed(job: &Job<'_>) -> Result<(), UploadError> {
    let now = Stamp::of(job.file).map_err(local)?;
    if job.digest.stamp.is_some_and(|then| then != now) {
        return Err(UploadError::new(
            FailureKind::ChecksumMismatch,
            format!(
                "{} changed while it was being uploaded; hashing it again",
                job.path.display()
            ),
        ));
    }
    Ok(())
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

    #[test]
    fn a_capture_written_after_its_whole_file_pass_is_not_completed_but_hashed_again() {
        use std::os::unix::fs::FileExt as _;
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("20261127T142503Z.pcap");
        std::fs::write(&capture, vec![0u8; 4096]).unwrap();
        let (file, digest) = crate::hash::hash_file(&capture, None).unwrap();
        let metadata = HashMap::new();
        let job = Job {
            file: &file,
            path: &capture,
            key: "k",
            digest: &digest,
            metadata: &metadata,
            tagging: None,
            record: dir.path().join("record.json"),
        };
        assert!(unchanged_since_hashed(&job).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(10));
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&capture)
            .unwrap();
        writer.write_all_at(b"late bytes", 100).unwrap();
        let e = unchanged_since_hashed(&job).unwrap_err();
        assert_eq!(e.kind, FailureKind::ChecksumMismatch, "{e}");
    }

    #[test]
    fn a_part_plan_covers_the_file_with_a_short_last_part() {
        let plan = PartPlan::new(100, 30);
        assert_eq!(plan.count(), 4);
        let lens: Vec<u64> = (0..plan.count()).map(|i| plan.len(i)).collect();
        assert_eq!(lens, [30, 30, 30, 10]);
        assert_eq!(plan.offset(3), 90);
        assert_eq!(PartPlan::new(90, 30).count(), 3);
        assert_eq!(PartPlan::new(0, 30).count(), 1);
    }

    #[tokio::test]
    async fn body_is_read_from_the_hashed_descriptor_not_a_symlink_swapped_in_after() {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("20261127T142503Z.pcap");
        let secret = dir.path().join("secret");
        std::fs::write(&capture, b"the capture that was hashed").unwrap();
        std::fs::write(&secret, b"a file outside the spool").unwrap();
        let (file, _) = crate::hash::hash_file(&capture, None).unwrap();
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

/// A small object sent from memory: a flow index, a journal segment.
#[derive(Debug)]
struct SmallObject<'a> {
    key: &'a str,
    bytes: bytes::Bytes,
    content_type: &'static str,
    metadata: Option<HashMap<String, String>>,
    tagging: Option<&'a str>,
    operation: &'static str,
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
    tagging: Option<&'a str>,
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
