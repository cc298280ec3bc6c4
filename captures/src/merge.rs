//! `fetch --merge`: a streaming k-way merge of pcap files by timestamp, cut
//! to the window. One packet per input is held at a time, so memory does
//! not grow with the number or size of the files.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::TsResolution;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};

use crate::window::Window;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot read {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a pcap file ({detail})")]
    NotPcap { path: PathBuf, detail: String },
    #[error(
        "cannot merge captures of different link types into one pcap: {first} has link type {first_link}, {other} has {other_link}; fetch them with --out and open them side by side, or merge one node at a time with --node"
    )]
    LinkTypes {
        first: PathBuf,
        first_link: u32,
        other: PathBuf,
        other_link: u32,
    },
    #[error("{path} stops after {packets} whole packets: {detail}")]
    Damaged {
        path: PathBuf,
        packets: u64,
        detail: String,
    },
    #[error("cannot write {path}: {detail}")]
    Write { path: PathBuf, detail: String },
    #[error("no files to merge")]
    Nothing,
}

/// What the merge wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    pub packets: u64,
    pub link_type: u32,
}

struct Input {
    path: PathBuf,
    reader: PcapReader<BufReader<File>>,
    read: u64,
}

impl Input {
    /// The next packet, owned (the reader's buffer is reused).
    fn next(&mut self) -> Result<Option<PcapPacket<'static>>, MergeError> {
        match self.reader.next_packet() {
            None => Ok(None),
            Some(Ok(packet)) => {
                self.read += 1;
                Ok(Some(packet.into_owned()))
            }
            Some(Err(e)) => Err(MergeError::Damaged {
                path: self.path.clone(),
                packets: self.read,
                detail: e.to_string(),
            }),
        }
    }
}

/// Merges `inputs` into `out` (written to a temporary file beside it and
/// renamed, so a failed merge leaves no partial file), keeping the packets
/// whose time is within `window`. Ties keep the order of `inputs`, as
/// mergecap does.
pub fn merge(inputs: &[PathBuf], window: &Window, out: &Path) -> Result<Merged, MergeError> {
    let mut readers = Vec::with_capacity(inputs.len());
    for path in inputs {
        let file = File::open(path).map_err(|source| MergeError::Open {
            path: path.clone(),
            source,
        })?;
        let reader = PcapReader::new(BufReader::new(file)).map_err(|e| MergeError::NotPcap {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        readers.push(Input {
            path: path.clone(),
            reader,
            read: 0,
        });
    }
    let first = readers.first().ok_or(MergeError::Nothing)?;
    let first_header = first.reader.header();
    let first_link = u32::from(first_header.datalink);
    for other in &readers[1..] {
        let link = u32::from(other.reader.header().datalink);
        if link != first_link {
            return Err(MergeError::LinkTypes {
                first: first.path.clone(),
                first_link,
                other: other.path.clone(),
                other_link: link,
            });
        }
    }
    // Nanosecond output when any input has nanoseconds: never round away
    // the precision a capture has.
    let nanos = readers
        .iter()
        .any(|r| r.reader.header().ts_resolution == TsResolution::NanoSecond);
    let header = PcapHeader {
        snaplen: readers
            .iter()
            .map(|r| r.reader.header().snaplen)
            .max()
            .unwrap_or(first_header.snaplen),
        ts_resolution: if nanos {
            TsResolution::NanoSecond
        } else {
            TsResolution::MicroSecond
        },
        ..first_header
    };

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write_error = |detail: String| MergeError::Write {
        path: out.to_owned(),
        detail,
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| write_error(e.to_string()))?;
    let mut writer = PcapWriter::with_header(BufWriter::new(tmp), header)
        .map_err(|e| write_error(e.to_string()))?;

    let from = since_epoch(window.from);
    let to = since_epoch(window.to);
    let mut heads: Vec<Option<PcapPacket<'static>>> = Vec::with_capacity(readers.len());
    let mut queue: BinaryHeap<Reverse<(Duration, usize)>> = BinaryHeap::new();
    for (i, input) in readers.iter_mut().enumerate() {
        let head = input.next()?;
        if let Some(p) = &head {
            queue.push(Reverse((p.timestamp, i)));
        }
        heads.push(head);
    }
    let mut written = 0u64;
    while let Some(Reverse((_, i))) = queue.pop() {
        if let Some(packet) = heads[i].take()
            && from <= packet.timestamp
            && packet.timestamp <= to
        {
            writer
                .write_packet(&packet)
                .map_err(|e| write_error(e.to_string()))?;
            written += 1;
        }
        let next = readers[i].next()?;
        if let Some(p) = &next {
            queue.push(Reverse((p.timestamp, i)));
        }
        heads[i] = next;
    }
    let mut buffered = writer.into_writer();
    buffered.flush().map_err(|e| write_error(e.to_string()))?;
    let tmp = buffered
        .into_inner()
        .map_err(|e| write_error(e.to_string()))?;
    tmp.persist(out).map_err(|e| write_error(e.to_string()))?;
    Ok(Merged {
        packets: written,
        link_type: first_link,
    })
}

fn since_epoch(t: chrono::DateTime<chrono::Utc>) -> Duration {
    let secs = u64::try_from(t.timestamp()).unwrap_or(0);
    Duration::new(secs, t.timestamp_subsec_nanos())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pcap_file::DataLink;

    fn write(path: &Path, link: DataLink, times: &[u64]) {
        let header = PcapHeader {
            datalink: link,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
        for t in times {
            w.write_packet(&PcapPacket::new(Duration::from_secs(*t), 4, &[0, 1, 2, 3]))
                .unwrap();
        }
    }

    fn window(from: i64, to: i64) -> Window {
        Window::new(
            chrono::DateTime::from_timestamp(from, 0).unwrap(),
            chrono::DateTime::from_timestamp(to, 0).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn different_link_types_are_refused_naming_both_files_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
        write(&a, DataLink::ETHERNET, &[1]);
        write(&b, DataLink::LINUX_SLL2, &[2]);
        let out = dir.path().join("m.pcap");
        let e = merge(&[a, b], &window(0, 10), &out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.pcap has link type 1") && e.contains("b.pcap has 276"),
            "{e}"
        );
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_truncated_input_is_named_with_the_packets_read_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.pcap");
        write(&a, DataLink::ETHERNET, &[1, 2, 3]);
        let bytes = std::fs::read(&a).unwrap();
        std::fs::write(&a, &bytes[..bytes.len() - 2]).unwrap();
        let out = dir.path().join("m.pcap");
        let e = merge(&[a], &window(0, 10), &out).unwrap_err().to_string();
        assert!(e.contains("a.pcap stops after 2 whole packets"), "{e}");
        assert!(!out.exists());
    }

    #[test]
    fn a_file_that_is_not_a_pcap_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("notes.txt");
        std::fs::write(&a, "hello, this is text").unwrap();
        let e = merge(&[a], &window(0, 10), &dir.path().join("m.pcap"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("notes.txt is not a pcap file"), "{e}");
    }
}
