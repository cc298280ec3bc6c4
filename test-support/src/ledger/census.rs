//! What the bucket holds at the end: every object downloaded, checked
//! against its metadata SHA-256, and every capture read strictly record by
//! record (a record that cannot be read makes the capture damaged; its
//! datagrams do not count as lost). Also the multipart uploads left open.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_sdk_s3::Client;
use bucket::object_metadata::{ObjectMetadata, PcapVerdict};
use futures::StreamExt as _;
use pcap_file::pcap::PcapReader;

use crate::fixtures::sha256_hex;
use crate::numbered::find_sequence;

/// Objects fetched at once.
const DOWNLOADS: usize = 8;

/// What the census expects of the bucket.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Numbered datagrams `0..sent` were sent.
    pub sent: u64,
    /// The launcher's runs, as (start, end) wall-clock windows: a record
    /// is counted for the run whose window holds its timestamp.
    pub runs: Vec<(SystemTime, SystemTime)>,
    /// Synthetic captures (not traffic): file name → SHA-256 of its bytes.
    pub synthetic: HashMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Census {
    pub capture_objects: u64,
    pub other_objects: u64,
    pub bytes: u64,
    /// How often each number `0..sent` is in the bucket.
    pub numbered: Vec<u8>,
    /// Numbers found that were never sent.
    pub unexpected_numbers: u64,
    pub ticks: u64,
    /// Records (any) per launcher run; and those in no run's window.
    pub records_per_run: Vec<u64>,
    pub records_outside_runs: u64,
    /// Keys whose bytes do not match their metadata SHA-256 (or have none).
    pub corrupt: Vec<String>,
    /// Keys of captures that are not whole pcaps, with why.
    pub damaged: Vec<(String, String)>,
    /// Synthetic captures placed in the spool.
    pub synthetic_expected: usize,
    /// Synthetic captures found whole, by file name.
    pub synthetic_found: HashMap<String, u32>,
    /// Multipart uploads never completed nor aborted.
    pub open_multipart_uploads: Vec<String>,
}

impl Census {
    pub fn in_bucket(&self) -> u64 {
        self.numbered.iter().filter(|&&n| n > 0).count() as u64
    }

    pub fn duplicated(&self) -> u64 {
        self.numbered.iter().filter(|&&n| n > 1).count() as u64
    }

    /// The numbers sent and not in the bucket.
    pub fn missing(&self) -> Vec<u64> {
        (0u64..)
            .zip(&self.numbered)
            .filter(|(_, count)| **count == 0)
            .map(|(n, _)| n)
            .collect()
    }
}

/// Downloads and checks everything in `bucket`.
pub async fn take(client: &Client, bucket: &str, expected: &Expected) -> anyhow::Result<Census> {
    let mut census = Census {
        numbered: vec![0; usize::try_from(expected.sent)?],
        records_per_run: vec![0; expected.runs.len()],
        synthetic_expected: expected.synthetic.len(),
        ..Census::default()
    };
    let keys = list_keys(client, bucket).await?;
    let mut downloads = futures::stream::iter(keys.into_iter().map(|key| async move {
        let object = client.get_object().bucket(bucket).key(&key).send().await;
        let object = match object {
            Ok(object) => object,
            Err(e) => return (key, Err(anyhow::anyhow!("GetObject: {e}"))),
        };
        let metadata = object.metadata().cloned().unwrap_or_default();
        match object.body.collect().await {
            Ok(body) => (key, Ok((body.into_bytes().to_vec(), metadata))),
            Err(e) => (key, Err(anyhow::anyhow!("reading the body: {e}"))),
        }
    }))
    .buffer_unordered(DOWNLOADS);
    while let Some((key, fetched)) = downloads.next().await {
        let (body, metadata) = fetched?;
        census.examine(&key, &body, &metadata, expected);
    }
    census.open_multipart_uploads = open_multipart_uploads(client, bucket).await?;
    Ok(census)
}

impl Census {
    fn examine(
        &mut self,
        key: &str,
        body: &[u8],
        metadata: &HashMap<String, String>,
        expected: &Expected,
    ) {
        self.bytes += body.len() as u64;
        if !key.ends_with(".pcap") {
            // Flow indexes and the uploader's probes: checked by S3's
            // checksum, not part of the ledger.
            self.other_objects += 1;
            return;
        }
        self.capture_objects += 1;
        let sha256 = sha256_hex(body);
        let metadata = ObjectMetadata::from_headers(metadata).ok();
        if metadata.as_ref().map(|m| &m.sha256) != Some(&sha256) {
            self.corrupt.push(key.to_owned());
        }
        let file_name = key.rsplit('/').next().unwrap_or(key);
        if let Some(expected_sha) = expected.synthetic.get(file_name) {
            if *expected_sha == sha256 {
                *self
                    .synthetic_found
                    .entry(file_name.to_owned())
                    .or_insert(0) += 1;
            } else {
                self.corrupt
                    .push(format!("{key} (not the synthetic bytes)"));
            }
            return;
        }
        if let Some(verdict @ PcapVerdict::Damaged(_)) = metadata.map(|m| m.pcap) {
            self.damaged
                .push((key.to_owned(), format!("the uploader found it {verdict}")));
        }
        if let Err(why) = self.read_records(body, expected) {
            self.damaged.push((key.to_owned(), why));
        }
    }

    /// Reads every record; counts numbers, ticks and records per run.
    fn read_records(&mut self, body: &[u8], expected: &Expected) -> Result<(), String> {
        let mut reader = PcapReader::new(body).map_err(|e| format!("not a pcap: {e}"))?;
        let mut records = 0u64;
        while let Some(packet) = reader.next_packet() {
            let packet = packet.map_err(|e| format!("record {} unreadable: {e}", records + 1))?;
            records += 1;
            let at = SystemTime::UNIX_EPOCH + packet.timestamp;
            match expected
                .runs
                .iter()
                .position(|(start, end)| (*start..=*end).contains(&at))
            {
                Some(run) => self.records_per_run[run] += 1,
                None => self.records_outside_runs += 1,
            }
            if let Some(n) = find_sequence(&packet.data) {
                match self
                    .numbered
                    .get_mut(usize::try_from(n).unwrap_or(usize::MAX))
                {
                    Some(count) => *count = count.saturating_add(1),
                    None => self.unexpected_numbers += 1,
                }
            } else if packet
                .data
                .windows(spool::tick::TICK_MAGIC.len())
                .any(|w| w == spool::tick::TICK_MAGIC)
            {
                self.ticks += 1;
            }
        }
        Ok(())
    }
}

async fn list_keys(client: &Client, bucket: &str) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| anyhow::anyhow!("ListObjectsV2: {e}"))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    Ok(keys)
}

async fn open_multipart_uploads(client: &Client, bucket: &str) -> anyhow::Result<Vec<String>> {
    let listed = client
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("ListMultipartUploads: {e}"))?;
    Ok(listed
        .uploads()
        .iter()
        .map(|u| {
            format!(
                "{} ({})",
                u.key().unwrap_or("?"),
                u.upload_id().unwrap_or("?")
            )
        })
        .collect())
}
