//! `fetch --merge`: a streaming k-way merge of pcap files by timestamp, cut
//! to the window. One packet per input is held at a time, so memory does
//! not grow with the number or size of the files. An input's file is open
//! only from its first packet's turn to its last, so the files open at once
//! are those overlapping in time (about one per node), not all of them.
//!
//! When every input has the same link type and timestamp precision the
//! output is a pcap like its inputs. When they differ (`-i any` on one node,
//! `-i eth0` on another; a nanosecond capture beside a microsecond one) the
//! output is pcapng, with one interface per distinct (node, link type,
//! precision), so that each packet keeps the link type it was captured with:
//! never a pcap whose header lies about some of its packets.
//!
//! Each input is first read by the pcap check the uploader uses, and only
//! its whole records are merged: a damaged capture (a torn tail, an
//! impossible record) gives the packets before the damage, and the damage
//! is reported in [`Merged::damaged`], never read as packets.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read as _, Take, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::name_resolution::{
    Ipv4Record, Ipv6Record, NameResolutionBlock, Record,
};
use pcap_file::{DataLink, TsResolution};
use serde::Serialize;
use spool::pcap::DamageKind;

use crate::window::Window;

/// The error of `open(2)` when the process has as many files open as its
/// limit allows (Linux).
const EMFILE: i32 = 24;

/// pcap-file writes every enhanced packet block's timestamp in nanoseconds,
/// so every interface says so (`if_tsresol` 9: 10^-9 s).
const PCAPNG_NANOSECONDS: u8 = 9;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot read {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a pcap file ({detail}); give files written by tcpdump -w")]
    NotPcap { path: PathBuf, detail: String },
    #[error("{path} could not be read after {packets} of its whole packets: {detail}")]
    Unreadable {
        path: PathBuf,
        packets: u64,
        detail: String,
    },
    #[error(
        "cannot open {path} while {open} other captures that overlap it in time are open: {source}; raise the open-file limit (ulimit -n) or merge a narrower window or fewer nodes"
    )]
    TooManyOpen {
        path: PathBuf,
        open: usize,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {detail}")]
    Write { path: PathBuf, detail: String },
    #[error("no files to merge")]
    Nothing,
}

/// One file to merge and the node it was captured on (the pcapng
/// interface it goes to when the inputs differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeInput {
    pub path: PathBuf,
    pub node: String,
}

/// The file format the merge wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// All inputs agreed: a pcap with their link type and precision.
    Pcap,
    /// The inputs differed: pcapng, one interface per (node, link type,
    /// precision).
    PcapNg,
}

/// How packets were captured: what a pcap header says for all of its
/// packets, and what one pcapng interface says for its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Capturing {
    pub link_type: u32,
    pub nanoseconds: bool,
}

impl std::fmt::Display for Capturing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "link type {}, {} timestamps",
            self.link_type,
            if self.nanoseconds {
                "nanosecond"
            } else {
                "microsecond"
            }
        )
    }
}

/// One interface of a pcapng output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub node: String,
    #[serde(flatten)]
    pub capturing: Capturing,
}

/// An input whose whole records were merged up to its damage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedInput {
    pub path: PathBuf,
    /// Whole packets before the damage (all of them were merged, those in
    /// the window written).
    pub packets: u64,
    pub damage: String,
}

impl std::fmt::Display for DamagedInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is damaged ({}); merged its {} whole packets before it",
            self.path.display(),
            self.damage,
            self.packets
        )
    }
}

/// What the merge wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merged {
    pub packets: u64,
    pub format: Format,
    /// The inputs' link type and precision when they agree (pcap).
    pub capturing: Option<Capturing>,
    /// The pcapng interfaces, in interface-id order (empty for pcap).
    pub interfaces: Vec<Interface>,
    /// Inputs merged only up to their damage.
    pub damaged: Vec<DamagedInput>,
    /// Addresses given names in a name-resolution block.
    pub named: usize,
}

impl std::fmt::Display for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.capturing, self.format) {
            (Some(c), Format::Pcap) => write!(f, "{} packets, pcap ({c})", self.packets),
            _ => {
                write!(
                    f,
                    "{} packets, pcapng ({}; one interface each): ",
                    self.packets,
                    if self.named > 0 {
                        format!("{} addresses named", self.named)
                    } else {
                        "the captures differ".to_owned()
                    }
                )?;
                let names: Vec<String> = self
                    .interfaces
                    .iter()
                    .enumerate()
                    .map(|(id, i)| format!("#{id} {} ({})", i.node, i.capturing))
                    .collect();
                f.write_str(&names.join(", "))
            }
        }
    }
}

/// A reader of an input's whole records only (up to the pcap check's
/// `whole_bytes`).
type WholeRecords = PcapReader<BufReader<Take<File>>>;

struct Input {
    path: PathBuf,
    header: PcapHeader,
    /// Where its whole records end (the pcap check's `whole_bytes`).
    whole_bytes: u64,
    /// Its first packet's time, before it is opened.
    first: Option<Duration>,
    /// Open from its first packet's turn in the merge to its last packet.
    reader: Option<WholeRecords>,
    /// Its last packet was read (and its file closed).
    finished: bool,
    read: u64,
    /// The pcapng interface its packets go to.
    interface: u32,
}

impl Input {
    fn capturing(&self) -> Capturing {
        let header = self.header;
        Capturing {
            link_type: u32::from(header.datalink),
            nanoseconds: header.ts_resolution == TsResolution::NanoSecond,
        }
    }

    /// The next packet, owned (the reader's buffer is reused).
    ///
    /// Read raw: pcap-file 2.0's own conversion refuses a packet longer on
    /// the wire than the snaplen, i.e. every packet `tcpdump -s` cut
    /// (courvoif/pcap-file#36, fixed only in its 3.0 pre-releases). The
    /// lengths were judged by the pcap check before this reader was made.
    ///
    /// The file is opened at the first call and closed after its last
    /// packet.
    fn next(&mut self, others_open: usize) -> Result<Option<PcapPacket<'static>>, MergeError> {
        let resolution = self.header.ts_resolution;
        let reader = match &mut self.reader {
            Some(reader) => reader,
            None if self.finished => return Ok(None),
            None => self
                .reader
                .insert(
                    whole_records(&self.path, self.whole_bytes).map_err(|e| match e {
                        MergeError::Open { path, source }
                            if source.raw_os_error() == Some(EMFILE) =>
                        {
                            MergeError::TooManyOpen {
                                path,
                                open: others_open,
                                source,
                            }
                        }
                        e => e,
                    })?,
                ),
        };
        match reader.next_raw_packet() {
            None => {
                // Exhausted: its descriptor goes back for the next input.
                self.reader = None;
                self.finished = true;
                Ok(None)
            }
            Some(Ok(raw)) => {
                self.read += 1;
                let timestamp = spool::pcap::record_time(raw.ts_sec, raw.ts_frac, resolution);
                Ok(Some(
                    PcapPacket {
                        timestamp,
                        orig_len: raw.orig_len,
                        data: raw.data,
                    }
                    .into_owned(),
                ))
            }
            // The pcap check found these records whole; a reader refusing
            // one of them is a disagreement worth naming, not damage.
            Some(Err(e)) => Err(MergeError::Unreadable {
                path: self.path.clone(),
                packets: self.read,
                detail: e.to_string(),
            }),
        }
    }
}

/// The merged file being written: a pcap when the inputs agree, pcapng
/// when they do not.
enum Output<W: Write> {
    Pcap(PcapWriter<W>),
    PcapNg(PcapNgWriter<W>),
}

impl<W: Write> Output<W> {
    fn write(&mut self, packet: &PcapPacket<'_>, interface: u32) -> pcap_file::PcapResult<()> {
        match self {
            Output::Pcap(w) => w.write_packet(packet).map(drop),
            Output::PcapNg(w) => w
                .write_pcapng_block(EnhancedPacketBlock {
                    interface_id: interface,
                    timestamp: packet.timestamp,
                    original_len: packet.orig_len,
                    data: std::borrow::Cow::Borrowed(&packet.data),
                    options: vec![],
                })
                .map(drop),
        }
    }

    fn into_inner(self) -> W {
        match self {
            Output::Pcap(w) => w.into_writer(),
            Output::PcapNg(w) => w.into_inner(),
        }
    }
}

/// Merges `inputs` into `out` (written to a temporary file beside it and
/// renamed, so a failed merge leaves no partial file), keeping the packets
/// whose time is within `window`. Of packets with the same time, the one
/// from the later input goes first, as mergecap does (it takes the last of
/// the earliest).
pub fn merge(inputs: &[MergeInput], window: &Window, out: &Path) -> Result<Merged, MergeError> {
    merge_named(inputs, window, out, &[])
}

/// [`merge`], and with `names` (an address and the name of who held it,
/// see [`crate::identity`]) always pcapng, with a name-resolution block
/// before the first packet, so that Wireshark and `tshark -N n` show the
/// names in place of those addresses. A name is made a plain label: its
/// control characters and NULs are left out, and it is cut at 255 bytes.
pub fn merge_named(
    inputs: &[MergeInput],
    window: &Window,
    out: &Path,
    names: &[(std::net::IpAddr, String)],
) -> Result<Merged, MergeError> {
    // One capture is merged once, however often it was given.
    let mut seen = HashSet::new();
    let inputs: Vec<&MergeInput> = inputs.iter().filter(|i| seen.insert(&i.path)).collect();
    let mut readers = Vec::with_capacity(inputs.len());
    let mut damaged = Vec::new();
    for input in &inputs {
        let (reader, damage) = probe(&input.path)?;
        damaged.extend(damage);
        readers.push(reader);
    }
    let first = readers.first().ok_or(MergeError::Nothing)?.capturing();
    let all_agree = readers.iter().all(|r| r.capturing() == first) && names.is_empty();
    let snaplen = readers.iter().map(|r| r.header.snaplen).max().unwrap_or(0);

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write_error = |detail: String| MergeError::Write {
        path: out.to_owned(),
        detail,
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| write_error(e.to_string()))?;
    let buffered = BufWriter::new(tmp);
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut output = if all_agree {
        let header = PcapHeader {
            snaplen,
            ..readers[0].header
        };
        Output::Pcap(
            PcapWriter::with_header(buffered, header).map_err(|e| write_error(e.to_string()))?,
        )
    } else {
        let mut writer = PcapNgWriter::new(buffered).map_err(|e| write_error(e.to_string()))?;
        for (reader, input) in readers.iter_mut().zip(&inputs) {
            let interface = Interface {
                node: input.node.clone(),
                capturing: reader.capturing(),
            };
            reader.interface = match interfaces.iter().position(|i| *i == interface) {
                Some(id) => u32::try_from(id).unwrap_or(u32::MAX),
                None => {
                    writer
                        .write_pcapng_block(interface_block(&interface, reader.header.snaplen))
                        .map_err(|e| write_error(e.to_string()))?;
                    interfaces.push(interface);
                    u32::try_from(interfaces.len() - 1).unwrap_or(u32::MAX)
                }
            };
        }
        if !names.is_empty() {
            writer
                .write_pcapng_block(name_block(names))
                .map_err(|e| write_error(e.to_string()))?;
        }
        Output::PcapNg(writer)
    };

    let from = since_epoch(window.from);
    let to = since_epoch(window.to);
    // Each input's packet read ahead (None before its first turn, when the
    // queue knows its time from the pcap check and its file is not open).
    let mut heads: Vec<Option<PcapPacket<'static>>> = vec![None; readers.len()];
    // Earliest time first; on a tie, the later input (mergecap's order).
    let mut queue: BinaryHeap<Reverse<(Duration, Reverse<usize>)>> = readers
        .iter()
        .enumerate()
        .filter_map(|(i, input)| Some(Reverse((input.first?, Reverse(i)))))
        .collect();
    let mut open = 0usize;
    let mut written = 0u64;
    while let Some(Reverse((_, Reverse(i)))) = queue.pop() {
        let packet = match heads[i].take() {
            Some(packet) => Some(packet),
            None => {
                let first = readers[i].next(open)?;
                open += 1;
                first
            }
        };
        if let Some(packet) = packet
            && from <= packet.timestamp
            && packet.timestamp <= to
        {
            output
                .write(&packet, readers[i].interface)
                .map_err(|e| write_error(e.to_string()))?;
            written += 1;
        }
        let next = readers[i].next(open)?;
        match &next {
            Some(p) => queue.push(Reverse((p.timestamp, Reverse(i)))),
            None => open = open.saturating_sub(1),
        }
        heads[i] = next;
    }
    let mut buffered = output.into_inner();
    buffered.flush().map_err(|e| write_error(e.to_string()))?;
    let tmp = buffered
        .into_inner()
        .map_err(|e| write_error(e.to_string()))?;
    tmp.persist(out).map_err(|e| write_error(e.to_string()))?;
    Ok(Merged {
        packets: written,
        format: if all_agree {
            Format::Pcap
        } else {
            Format::PcapNg
        },
        capturing: all_agree.then_some(first),
        interfaces,
        damaged,
        named: names.len(),
    })
}

/// Reads `path` for merging without keeping it open: the pcap check reads
/// it first (a damaged file says so), then its header is read; its records
/// are opened at its turn ([`Input::next`]).
fn probe(path: &Path) -> Result<(Input, Option<DamagedInput>), MergeError> {
    let summary = File::open(path)
        .and_then(|file| spool::pcap::check_reader(BufReader::new(file)))
        .map_err(|source| MergeError::Open {
            path: path.to_owned(),
            source,
        })?;
    let damage = match summary.damage {
        Some(d) if matches!(d.kind, DamageKind::NotPcap | DamageKind::NoHeader) => {
            return Err(MergeError::NotPcap {
                path: path.to_owned(),
                detail: d.to_string(),
            });
        }
        Some(d) => Some(DamagedInput {
            path: path.to_owned(),
            packets: summary.packets,
            damage: d.to_string(),
        }),
        None => None,
    };
    let header = whole_records(path, summary.whole_bytes)?.header();
    let input = Input {
        path: path.to_owned(),
        header,
        whole_bytes: summary.whole_bytes,
        first: summary.first_packet.filter(|_| summary.packets > 0),
        reader: None,
        finished: false,
        read: 0,
        interface: 0,
    };
    Ok((input, damage))
}

/// A reader of the first `whole_bytes` of `path`: its whole records only.
fn whole_records(path: &Path, whole_bytes: u64) -> Result<WholeRecords, MergeError> {
    let whole = File::open(path)
        .map_err(|source| MergeError::Open {
            path: path.to_owned(),
            source,
        })?
        .take(whole_bytes);
    PcapReader::new(BufReader::new(whole)).map_err(|e| MergeError::NotPcap {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// The interface description of one (node, link type, precision): the node
/// as its name, the source's precision in its description (the packets
/// themselves are written in nanoseconds, which holds either).
fn interface_block(interface: &Interface, snaplen: u32) -> InterfaceDescriptionBlock<'static> {
    InterfaceDescriptionBlock {
        linktype: DataLink::from(interface.capturing.link_type),
        snaplen,
        options: vec![
            InterfaceDescriptionOption::IfName(interface.node.clone().into()),
            InterfaceDescriptionOption::IfDescription(
                format!("{}: {}", interface.node, interface.capturing).into(),
            ),
            InterfaceDescriptionOption::IfTsResol(PCAPNG_NANOSECONDS),
        ],
    }
}

/// The name-resolution block of `names`.
fn name_block(names: &[(std::net::IpAddr, String)]) -> NameResolutionBlock<'static> {
    let label = |name: &str| {
        let mut label: String = name
            .chars()
            .filter(|c| !c.is_control() && *c != '\0')
            .collect();
        while label.len() > 255 {
            label.pop();
        }
        label
    };
    let records = names
        .iter()
        .filter_map(|(ip, name)| {
            let name = label(name);
            if name.is_empty() {
                return None;
            }
            Some(match ip {
                std::net::IpAddr::V4(a) => Record::Ipv4(Ipv4Record {
                    ip_addr: a.octets().to_vec().into(),
                    names: vec![name.into()],
                }),
                std::net::IpAddr::V6(a) => Record::Ipv6(Ipv6Record {
                    ip_addr: a.octets().to_vec().into(),
                    names: vec![name.into()],
                }),
            })
        })
        .collect();
    NameResolutionBlock {
        records,
        options: vec![],
    }
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

    fn inputs(paths: &[(&Path, &str)]) -> Vec<MergeInput> {
        paths
            .iter()
            .map(|(path, node)| MergeInput {
                path: path.to_path_buf(),
                node: (*node).to_owned(),
            })
            .collect()
    }

    /// A pcapng file's interfaces (link type, name) and packets
    /// (interface, seconds).
    type Interfaces = Vec<(u32, String)>;
    type Packets = Vec<(u32, u64)>;

    fn read_pcapng(path: &Path) -> (Interfaces, Packets) {
        use pcap_file::pcapng::{Block, PcapNgReader};
        let mut reader = PcapNgReader::new(File::open(path).unwrap()).unwrap();
        let (mut interfaces, mut packets) = (Vec::new(), Vec::new());
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(i) => {
                    let name = i
                        .options
                        .iter()
                        .find_map(|o| match o {
                            InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .unwrap();
                    interfaces.push((u32::from(i.linktype), name));
                }
                Block::EnhancedPacket(p) => packets.push((p.interface_id, p.timestamp.as_secs())),
                _ => {}
            }
        }
        (interfaces, packets)
    }

    #[test]
    fn different_link_types_give_pcapng_with_one_interface_per_node_and_link_type() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a.pcap"),
            dir.path().join("b.pcap"),
            dir.path().join("c.pcap"),
        );
        write(&a, DataLink::ETHERNET, &[1, 4]);
        write(&b, DataLink::LINUX_SLL2, &[2, 3]);
        write(&c, DataLink::ETHERNET, &[5]);
        let out = dir.path().join("m.pcap");
        let merged = merge(
            &inputs(&[(&a, "node-a"), (&b, "node-b"), (&c, "node-a")]),
            &window(0, 10),
            &out,
        )
        .unwrap();
        assert_eq!(merged.format, Format::PcapNg);
        assert_eq!(merged.packets, 5);
        assert_eq!(merged.capturing, None);
        let (interfaces, packets) = read_pcapng(&out);
        // node-a's two Ethernet captures share one interface.
        assert_eq!(
            interfaces,
            [(1, "node-a".to_owned()), (276, "node-b".to_owned())]
        );
        assert_eq!(packets, [(0, 1), (1, 2), (1, 3), (0, 4), (0, 5)]);
        assert!(
            merged.to_string().contains("#1 node-b (link type 276"),
            "{merged}"
        );
    }

    #[test]
    fn different_timestamp_precisions_give_pcapng_never_a_rounded_pcap() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
        write(&a, DataLink::ETHERNET, &[1]);
        let header = PcapHeader {
            ts_resolution: TsResolution::NanoSecond,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(File::create(&b).unwrap(), header).unwrap();
        w.write_packet(&PcapPacket::new(Duration::new(2, 123_456_789), 4, &[0; 4]))
            .unwrap();
        drop(w);
        let out = dir.path().join("m.pcapng");
        let merged = merge(
            &inputs(&[(&a, "node-a"), (&b, "node-a")]),
            &window(0, 10),
            &out,
        )
        .unwrap();
        assert_eq!(merged.format, Format::PcapNg);
        assert_eq!(
            merged
                .interfaces
                .iter()
                .map(|i| i.capturing.nanoseconds)
                .collect::<Vec<_>>(),
            [false, true]
        );
    }

    #[test]
    fn inputs_that_agree_give_a_pcap_of_their_link_type() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
        write(&a, DataLink::LINUX_SLL2, &[1, 3]);
        write(&b, DataLink::LINUX_SLL2, &[2]);
        let out = dir.path().join("m.pcap");
        let merged = merge(
            &inputs(&[(&a, "node-a"), (&b, "node-b")]),
            &window(0, 2),
            &out,
        )
        .unwrap();
        assert_eq!(merged.format, Format::Pcap);
        assert_eq!(merged.packets, 2, "the packet at 3 s is after the window");
        let reader = PcapReader::new(File::open(&out).unwrap()).unwrap();
        assert_eq!(reader.header().datalink, DataLink::LINUX_SLL2);
    }

    #[test]
    fn a_torn_input_gives_its_whole_packets_and_names_its_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
        write(&a, DataLink::ETHERNET, &[1, 3, 5]);
        write(&b, DataLink::ETHERNET, &[2, 4, 6]);
        let bytes = std::fs::read(&a).unwrap();
        std::fs::write(&a, &bytes[..bytes.len() - 2]).unwrap();
        let out = dir.path().join("m.pcap");
        let merged = merge(&inputs(&[(&a, "n"), (&b, "n")]), &window(0, 10), &out).unwrap();
        // mergecap stops the whole merge at the torn record (5 packets);
        // here every other input is merged to its end.
        assert_eq!(merged.packets, 5);
        let mut reader = PcapReader::new(File::open(&out).unwrap()).unwrap();
        let mut times = Vec::new();
        while let Some(packet) = reader.next_packet() {
            times.push(packet.unwrap().timestamp.as_secs());
        }
        assert_eq!(times, [1, 2, 3, 4, 6]);
        let [damaged] = &merged.damaged[..] else {
            panic!("one damaged input expected: {:?}", merged.damaged);
        };
        let said = damaged.to_string();
        assert!(
            said.contains("a.pcap is damaged (ends inside the record at byte 64)")
                && said.contains("merged its 2 whole packets"),
            "{said}"
        );
    }

    #[test]
    fn a_file_given_twice_is_merged_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
        write(&a, DataLink::ETHERNET, &[1, 3]);
        write(&b, DataLink::ETHERNET, &[2]);
        let out = dir.path().join("m.pcap");
        let merged = merge(
            &inputs(&[(&a, "n"), (&b, "n"), (&a, "n")]),
            &window(0, 10),
            &out,
        )
        .unwrap();
        assert_eq!(merged.packets, 3);
    }

    #[test]
    fn a_file_that_is_not_a_pcap_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("notes.txt");
        std::fs::write(&a, "hello, this is text").unwrap();
        let e = merge(
            &inputs(&[(&a, "n")]),
            &window(0, 10),
            &dir.path().join("m.pcap"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("notes.txt is not a pcap file"), "{e}");
    }
}
