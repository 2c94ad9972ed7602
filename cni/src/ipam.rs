//! The built-in IPAM store: one folder per network, one file per allocated address.
//!
//! Layout of `<dataDir>/<network>/`:
//! - `lock`: taken with `flock(LOCK_EX)` around every read-modify-write, so concurrent plugin
//!   processes never hand out one address twice;
//! - `<address>` (e.g. `10.244.1.7`, `fd00:10:244:1::7`): holds `<containerID>\n<ifname>\n`,
//!   the attachment owning the address;
//! - `owner:<containerID>:<ifname>:v4` (and `:v6`): the attachment's index entry, a symlink
//!   to the name of its address record, so ADD, DEL and CHECK find an attachment's addresses
//!   without reading every record (under the lock, while a draining node runs a hundred
//!   plugins). An entry counts only when the record it points to names its attachment;
//! - `last-v4`, `last-v6`: the last address handed out, so allocation goes round-robin and a
//!   freed address is not reused at once (a late packet to the old pod does not reach a new one);
//!   written in place, padded with spaces to a fixed width;
//! - `indexed`: present once every record has its index entry. A store written by a plugin
//!   without the index gets its entries the first time this one takes the lock; when that
//!   fails (say the disk is full), that lock's lookups read every record instead, so DEL still
//!   frees what it should, and the next lock tries again.
//!
//! A record is written before the lock is taken, into a file without a name (`O_TMPFILE`), which
//! the locked part of ADD then links under the address: other plugins do not wait while it is
//! created and written. A plugin killed before the link leaves nothing (the kernel frees an
//! unnamed file with its last descriptor). On a filesystem without unnamed files the record is
//! written under the lock to a scratch name instead and linked from there.
//!
//! The address file is written before any veth exists, so a plugin killed half-way leaves at
//! worst a record that DEL or GC releases, never an interface without a record. The index
//! entry is written before its record and removed after it, so every record can be found
//! from its attachment; an entry left without its record confirms nothing and GC removes it.
//! (Running an older plugin on the node after this one, or during the upgrade, breaks that:
//! records it writes have no entry until GC, which gives every record it keeps one; until
//! then DEL does not free them. Removing `indexed` has them indexed at the next lock.)

use crate::config::{Attachment, PodRanges};
use crate::error::{CniError, ErrorCode};
use ipnetwork::IpNetwork;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag};
use nix::unistd::linkat;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// IPv6 ranges are not scanned further than this many addresses for a free one (a /64 has
/// 2^64; a node never holds that many pods).
const MAX_V6_SCAN: u128 = 1 << 20;
/// Where a new record is written under the lock before it is linked under its address, on a
/// filesystem without unnamed files (see the module documentation).
const SCRATCH_RECORD: &str = ".new-record";
/// Width of the `last-v4`/`last-v6` text: the longest IPv6 address.
const LAST_WIDTH: usize = 39;
/// The start of an index entry's name (see the module documentation).
const INDEX_PREFIX: &str = "owner:";
/// Present once the store's records are all indexed.
const INDEXED_MARKER: &str = "indexed";

/// Errors of the IPAM store.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Another plugin process held the lock for longer than the timeout.
    #[error("IPAM lock {path} not obtained within {timeout:?}")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },
    /// Every address of a range is taken.
    #[error("no free address left in {range}")]
    Exhausted {
        /// The range, as a CIDR string.
        range: String,
    },
    /// A file system operation failed.
    #[error("IPAM store {path}: {source}")]
    Io {
        /// File or folder concerned.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl From<IpamError> for CniError {
    fn from(e: IpamError) -> Self {
        let code = match &e {
            IpamError::LockTimeout { .. } => ErrorCode::TryAgainLater,
            IpamError::Exhausted { .. } => ErrorCode::RangeExhausted,
            IpamError::Io { .. } => ErrorCode::Io,
        };
        CniError::with_details(code, "IPAM failed", e)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IpamError + '_ {
    move |source| IpamError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The store folder of one network (not yet locked).
#[derive(Debug, Clone)]
pub struct IpamStore {
    dir: PathBuf,
}

/// The store with its lock held; the lock is released on drop.
#[derive(Debug)]
pub struct LockedStore {
    dir: PathBuf,
    _lock: File,
    /// False when giving every record its index entry failed at this lock (say on a full
    /// disk): the index may miss records, so lookups read the records instead, and the next
    /// lock tries again.
    indexed: bool,
}

/// An attachment's record before it has an address (see the module documentation). Made by
/// [`IpamStore::new_record`] before the lock, used by [`LockedStore::allocate`].
#[derive(Debug)]
pub struct NewRecord {
    owner: Attachment,
    file: RecordFile,
}

/// Where a new record's text is.
#[derive(Debug)]
enum RecordFile {
    /// In a file without a name, to be linked under the address.
    Unnamed(File),
    /// Nowhere yet: the filesystem has no unnamed files, so it goes to the scratch file under
    /// the lock.
    Scratch,
    /// Writing it failed. Only an ADD that needs a new address fails for that: a repeated ADD
    /// of an attachment that holds its addresses does not (say on a full disk).
    Failed(io::Error),
}

/// Where [`LockedStore::allocate_in`] links a record from.
enum LinkSource<'a> {
    Unnamed(&'a File),
    Scratch(PathBuf),
}

/// Addresses of one attachment, at most one per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Allocation {
    /// The IPv4 address, if the network has an IPv4 range.
    pub v4: Option<Ipv4Addr>,
    /// The IPv6 address, if the network has an IPv6 range.
    pub v6: Option<Ipv6Addr>,
}

impl Allocation {
    /// The addresses, IPv4 first.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
            .collect()
    }
}

/// The first and last address the store hands out in `range`, as numbers; `None` when it
/// has none (an IPv4 /31 or /32, an IPv6 /128). IPv4 leaves out the network and broadcast
/// addresses; IPv6 the all-zero host part, the subnet-router anycast address (RFC 4291
/// section 2.6.1).
fn host_bounds(range: IpNetwork) -> Option<(u128, u128)> {
    let (network, last) = match range {
        IpNetwork::V4(net) => (
            u128::from(u32::from(net.network())),
            u128::from(u32::from(net.broadcast())).checked_sub(1)?,
        ),
        IpNetwork::V6(net) => {
            let network = u128::from(net.network());
            let host_bits = 128 - u32::from(net.prefix());
            let size = 1u128.checked_shl(host_bits).map_or(u128::MAX, |s| s - 1);
            (network, network + size)
        }
    };
    let first = network.checked_add(1)?;
    (first <= last).then_some((first, last))
}

/// How many addresses the store can hand out in `range` (see [`host_bounds`]).
pub fn capacity(range: IpNetwork) -> u128 {
    host_bounds(range).map_or(0, |(first, last)| last - first + 1)
}

impl IpamStore {
    /// The store in `dir` (created on first lock).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The addresses allocated now, read without the lock (for a usage gauge: a plugin
    /// running meanwhile may add or free one). A store not created yet holds none.
    pub fn allocated(&self) -> Result<Vec<IpAddr>, IpamError> {
        match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(IpamError::Io {
                path: self.dir.clone(),
                source: e,
            }),
            Ok(entries) => Ok(entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()),
        }
    }

    /// `owner`'s record, written to a file without a name where the filesystem has them
    /// (see the module documentation). A failure is kept in it, see [`RecordFile::Failed`].
    pub fn new_record(&self, owner: &Attachment) -> NewRecord {
        let open = || {
            OpenOptions::new()
                .write(true)
                .custom_flags(OFlag::O_TMPFILE.bits())
                .open(&self.dir)
        };
        let opened = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.dir).and_then(|()| open())
            }
            other => other,
        };
        let file = match opened {
            Ok(mut file) => match io::Write::write_all(&mut file, format_owner(owner).as_bytes()) {
                Ok(()) => RecordFile::Unnamed(file),
                Err(e) => RecordFile::Failed(e),
            },
            Err(e) if no_unnamed_files(&e) => RecordFile::Scratch,
            Err(e) => RecordFile::Failed(e),
        };
        NewRecord {
            owner: owner.clone(),
            file,
        }
    }

    /// Takes the store's lock, waiting at most `timeout` (then [`IpamError::LockTimeout`]).
    pub fn lock(&self, timeout: Duration) -> Result<LockedStore, IpamError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let locked = |file| {
            let mut store = LockedStore {
                dir: self.dir.clone(),
                _lock: file,
                indexed: false,
            };
            if let Err(e) = store.index_once() {
                // Only stderr reaches anyone from here (the runtime's log).
                eprintln!("podroute: IPAM index incomplete, reading every record: {e}");
            } else {
                store.indexed = true;
            }
            store
        };
        match file.try_lock() {
            Ok(()) => return Ok(locked(file)),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => return Err(IpamError::Io { path, source }),
        }
        // Contended (a runtime draining a node runs many plugins at once): wait in the kernel's
        // queue, which hands the lock over the moment it is free, rather than poll with sleeps
        // that outlast the sub-millisecond hold. `flock` has no timeout, so a thread waits and
        // this one gives up after `timeout`; a late grant then only closes the file, which
        // drops the lock again.
        let (tx, rx) = mpsc::sync_channel(1);
        thread::Builder::new()
            .spawn(move || {
                let _ = tx.send(file.lock().map(|()| file));
            })
            .map_err(|source| IpamError::Io {
                path: path.clone(),
                source,
            })?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(file)) => Ok(locked(file)),
            Ok(Err(source)) => Err(IpamError::Io { path, source }),
            Err(_) => Err(IpamError::LockTimeout { path, timeout }),
        }
    }
}

impl LockedStore {
    /// Every record: address and owner (`None` when the file is unreadable or truncated, e.g.
    /// written by a process killed mid-write; such records belong to no valid attachment).
    pub fn records(&self) -> Result<Vec<(IpAddr, Option<Attachment>)>, IpamError> {
        Ok(self
            .record_paths()?
            .into_iter()
            .map(|(addr, path)| (addr, read_owner(&path).ok().flatten()))
            .collect())
    }

    /// Every file named by an address, with its path.
    fn record_paths(&self) -> Result<Vec<(IpAddr, PathBuf)>, IpamError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            if let Some(addr) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            {
                out.push((addr, entry.path()));
            }
        }
        Ok(out)
    }

    /// The addresses held by `owner`.
    pub fn lookup(&self, owner: &Attachment) -> Result<Allocation, IpamError> {
        Ok(Allocation {
            v4: match self.indexed(owner, false)? {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            },
            v6: match self.indexed(owner, true)? {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            },
        })
    }

    /// The address of one family that `owner`'s index entry points to, if its record names
    /// `owner`; without a complete index ([`LockedStore::indexed`]), the first record of that
    /// family that names `owner`.
    fn indexed(&self, owner: &Attachment, v6: bool) -> Result<Option<IpAddr>, IpamError> {
        if !self.indexed {
            return self.scan(owner, v6);
        }
        let path = self.dir.join(index_name(owner, v6));
        let target = match fs::read_link(&path) {
            Ok(target) => target,
            // None, or not a symlink (nothing this plugin wrote).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                ) =>
            {
                return Ok(None);
            }
            Err(source) => return Err(IpamError::Io { path, source }),
        };
        let Some(addr) = target
            .to_str()
            .and_then(|t| t.parse::<IpAddr>().ok())
            .filter(|a| a.is_ipv6() == v6)
        else {
            return Ok(None);
        };
        // Unreadable is an error here, so that the entry is not taken for a stale one.
        let record = self.dir.join(addr.to_string());
        let owned = read_owner(&record).map_err(io_err(&record))?;
        Ok((owned.as_ref() == Some(owner)).then_some(addr))
    }

    /// The first record of one family that names `owner`, read from every record; a record
    /// that cannot be read is an error, as in [`Self::indexed`].
    fn scan(&self, owner: &Attachment, v6: bool) -> Result<Option<IpAddr>, IpamError> {
        for (addr, path) in self.record_paths()? {
            if addr.is_ipv6() == v6
                && read_owner(&path).map_err(io_err(&path))?.as_ref() == Some(owner)
            {
                return Ok(Some(addr));
            }
        }
        Ok(None)
    }

    /// Points `owner`'s index entry for the family of `addr` at it, replacing an old entry.
    fn point_index(&self, owner: &Attachment, addr: IpAddr) -> Result<(), IpamError> {
        let path = self.dir.join(index_name(owner, addr.is_ipv6()));
        remove_file(&path)?;
        std::os::unix::fs::symlink(addr.to_string(), &path).map_err(io_err(&path))
    }

    /// Gives every record an index entry, once per store (see the module documentation).
    fn index_once(&self) -> Result<(), IpamError> {
        let marker = self.dir.join(INDEXED_MARKER);
        if marker.exists() {
            return Ok(());
        }
        for (addr, owner) in self.records()? {
            if let Some(owner) = owner {
                self.point_index(&owner, addr)?;
            }
        }
        fs::write(&marker, "").map_err(io_err(&marker))
    }

    /// Gives the record's owner one address per configured range; returns what it already
    /// holds when called again for the same attachment (idempotent ADD).
    pub fn allocate(
        &self,
        record: &NewRecord,
        ranges: &PodRanges,
    ) -> Result<Allocation, IpamError> {
        let owner = &record.owner;
        let mut alloc = self.lookup(owner)?;
        if let (Some(net), None) = (ranges.v4, alloc.v4) {
            let (first, last) = host_bounds(IpNetwork::V4(net)).ok_or(IpamError::Exhausted {
                range: net.to_string(),
            })?;
            let a = self.allocate_in(record, "last-v4", first, last, &net.to_string(), |n| {
                IpAddr::V4(Ipv4Addr::from(n as u32))
            })?;
            alloc.v4 = match a {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            };
        }
        if let (Some(net), None) = (ranges.v6, alloc.v6) {
            let (first, last) = host_bounds(IpNetwork::V6(net)).ok_or(IpamError::Exhausted {
                range: net.to_string(),
            })?;
            let a = self.allocate_in(record, "last-v6", first, last, &net.to_string(), |n| {
                IpAddr::V6(Ipv6Addr::from(n))
            })?;
            alloc.v6 = match a {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            };
        }
        Ok(alloc)
    }

    fn allocate_in(
        &self,
        record: &NewRecord,
        last_file: &str,
        first: u128,
        last: u128,
        range: &str,
        to_addr: impl Fn(u128) -> IpAddr,
    ) -> Result<IpAddr, IpamError> {
        let owner = &record.owner;
        let last_path = self.dir.join(last_file);
        let previous = fs::read_to_string(&last_path)
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(|a| match a {
                IpAddr::V4(a) => u32::from(a) as u128,
                IpAddr::V6(a) => u128::from(a),
            })
            .filter(|n| (first..=last).contains(n));
        let mut candidate = match previous {
            Some(p) if p < last => p + 1,
            _ => first,
        };
        let span = (last - first).saturating_add(1).min(MAX_V6_SCAN);
        // The record appears with its owner in it or not at all: it is written first, then
        // linked under the address's name (a link fails if the name exists, like create_new).
        // A plugin killed between creating a record and writing its owner would otherwise
        // leave a record no DEL can free. Without an unnamed file, the owner goes to a scratch
        // file: its name is not an address, so `records` never sees it; the lock makes one name
        // enough. A scratch file left by a plugin killed after linking it is that pod's record
        // under another name: it is unlinked, never written into, so the record keeps its owner.
        let source = match &record.file {
            RecordFile::Unnamed(file) => LinkSource::Unnamed(file),
            RecordFile::Scratch => {
                let scratch = self.dir.join(SCRATCH_RECORD);
                remove_file(&scratch)?;
                fs::write(&scratch, format_owner(owner)).map_err(io_err(&scratch))?;
                LinkSource::Scratch(scratch)
            }
            RecordFile::Failed(e) => {
                let source = e.raw_os_error().map_or_else(
                    || io::Error::new(e.kind(), e.to_string()),
                    io::Error::from_raw_os_error,
                );
                return Err(IpamError::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let link = |path: &Path| -> io::Result<()> {
            match &source {
                LinkSource::Unnamed(file) => linkat(
                    AT_FDCWD,
                    format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
                    AT_FDCWD,
                    path,
                    AtFlags::AT_SYMLINK_FOLLOW,
                )
                .map_err(io::Error::from),
                LinkSource::Scratch(scratch) => fs::hard_link(scratch, path),
            }
        };
        let found = (|| {
            for _ in 0..span {
                let addr = to_addr(candidate);
                let path = self.dir.join(addr.to_string());
                // Only plugins holding the lock add records, so a free name stays free. The
                // index entry goes first: see the module documentation.
                if fs::symlink_metadata(&path).is_err() {
                    self.point_index(owner, addr)?;
                    match link(&path) {
                        Ok(()) => {
                            write_last(&last_path, addr).map_err(io_err(&last_path))?;
                            return Ok(addr);
                        }
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(IpamError::Io { path, source: e }),
                    }
                }
                candidate = if candidate >= last {
                    first
                } else {
                    candidate + 1
                };
            }
            Err(IpamError::Exhausted {
                range: range.to_owned(),
            })
        })();
        if let LinkSource::Scratch(scratch) = source {
            let _ = fs::remove_file(scratch);
        }
        found
    }

    /// Frees every address of `owner`; returns what was freed (empty when it held none).
    pub fn release(&self, owner: &Attachment) -> Result<Vec<IpAddr>, IpamError> {
        let mut freed = Vec::new();
        for v6 in [false, true] {
            if let Some(addr) = self.indexed(owner, v6)? {
                self.remove(addr)?;
                freed.push(addr);
            }
            // After the record: see the module documentation.
            remove_file(&self.dir.join(index_name(owner, v6)))?;
        }
        Ok(freed)
    }

    /// Frees every record whose owner is not in `valid` (GC); returns the owners released
    /// (`None` for unreadable records).
    pub fn retain(&self, valid: &[Attachment]) -> Result<Vec<Option<Attachment>>, IpamError> {
        let mut released = Vec::new();
        for (addr, owner) in self.records()? {
            let keep = owner.as_ref().is_some_and(|o| valid.contains(o));
            if let Some(o) = owner.as_ref().filter(|_| keep)
                && self.indexed(o, addr.is_ipv6())? != Some(addr)
            {
                // Written by a plugin without the index (see the module documentation).
                self.point_index(o, addr)?;
            }
            if !keep {
                self.remove(addr)?;
                if !released.contains(&owner) {
                    released.push(owner);
                }
            }
        }
        // A scratch record left by a plugin killed after linking it (no ADD uses it meanwhile:
        // they write it under the lock).
        remove_file(&self.dir.join(SCRATCH_RECORD))?;
        // The entries of what was released, and any left by a plugin killed before its record.
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            if let Some((owner, v6)) = name.to_str().and_then(parse_index_name)
                && self.indexed(&owner, v6)?.is_none()
            {
                remove_file(&entry.path())?;
            }
        }
        Ok(released)
    }

    fn remove(&self, addr: IpAddr) -> Result<(), IpamError> {
        remove_file(&self.dir.join(addr.to_string()))
    }
}

/// The owner a record names: `None` when the record is gone (released, or never linked by a
/// killed plugin), not text, or truncated; an error when it cannot be read.
fn read_owner(record: &Path) -> io::Result<Option<Attachment>> {
    match fs::read_to_string(record) {
        Ok(s) => Ok(parse_owner(&s)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::InvalidData
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// True when `open(O_TMPFILE)` failed because unnamed files are not to be had here: EOPNOTSUPP
/// from a filesystem without them, EISDIR from a kernel older than O_TMPFILE (3.11).
fn no_unnamed_files(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EOPNOTSUPP | Errno::EISDIR)
    )
}

/// Records `addr` as the last address handed out: written over the old text in place, padded to
/// [`LAST_WIDTH`] (readers trim it). Truncating and rewriting would cost a disk write inside the
/// lock on ext4, which starts writeback when a file truncated to zero is closed.
fn write_last(path: &Path, addr: IpAddr) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let text = format!("{addr:<LAST_WIDTH$}\n");
    file.write_all_at(text.as_bytes(), 0)?;
    // Longer only when something else wrote it; cut to a size that is not zero, which ext4
    // does not flush on close.
    if file.metadata()?.len() > text.len() as u64 {
        file.set_len(text.len() as u64)?;
    }
    Ok(())
}

/// Removes a file that may not exist.
fn remove_file(path: &Path) -> Result<(), IpamError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(IpamError::Io {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The name of `owner`'s index entry for one family. Neither a container ID nor an interface
/// name can hold a `:` (both are checked when read from the environment), so the name reads
/// back unambiguously, and it is never an address.
fn index_name(owner: &Attachment, v6: bool) -> String {
    let family = if v6 { "v6" } else { "v4" };
    format!(
        "{INDEX_PREFIX}{}:{}:{family}",
        owner.container_id, owner.ifname
    )
}

/// The attachment and family (true: IPv6) an index entry's name stands for.
fn parse_index_name(name: &str) -> Option<(Attachment, bool)> {
    let (rest, family) = name.strip_prefix(INDEX_PREFIX)?.rsplit_once(':')?;
    let v6 = match family {
        "v4" => false,
        "v6" => true,
        _ => return None,
    };
    let (container_id, ifname) = rest.split_once(':')?;
    Some((
        Attachment {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        },
        v6,
    ))
}

fn format_owner(owner: &Attachment) -> String {
    format!("{}\n{}\n", owner.container_id, owner.ifname)
}

fn parse_owner(s: &str) -> Option<Attachment> {
    let mut lines = s.lines();
    let container_id = lines.next().filter(|l| !l.is_empty())?.to_owned();
    let ifname = lines.next().filter(|l| !l.is_empty())?.to_owned();
    Some(Attachment {
        container_id,
        ifname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn owner(id: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn ranges(v4: &str, v6: Option<&str>) -> PodRanges {
        PodRanges {
            v4: Some(v4.parse().expect("cidr")),
            v6: v6.map(|s| s.parse().expect("cidr")),
        }
    }

    impl LockedStore {
        /// What ADD does: the record written first, then given its addresses.
        fn alloc(&self, owner: &Attachment, r: &PodRanges) -> Result<Allocation, IpamError> {
            let record = IpamStore::new(&self.dir).new_record(owner);
            self.allocate(&record, r)
        }
    }

    fn store() -> (tempfile::TempDir, LockedStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let locked = IpamStore::new(dir.path().join("net"))
            .lock(Duration::from_secs(1))
            .expect("lock");
        (dir, locked)
    }

    #[test]
    fn fills_a_range_skipping_network_and_broadcast() {
        let (_d, s) = store();
        let r = ranges("10.0.0.0/29", None);
        let got: HashSet<Ipv4Addr> = (0..6)
            .map(|i| {
                s.alloc(&owner(&format!("c{i}")), &r)
                    .expect("alloc")
                    .v4
                    .expect("v4")
            })
            .collect();
        let want: HashSet<Ipv4Addr> = (1..=6).map(|h| Ipv4Addr::new(10, 0, 0, h)).collect();
        assert_eq!(got, want);
        let err = s.alloc(&owner("c7"), &r).expect_err("full");
        assert!(matches!(err, IpamError::Exhausted { .. }));
        assert_eq!(CniError::from(err).code.as_u32(), 100);
    }

    #[test]
    fn capacity_counts_what_can_be_handed_out() {
        let net = |s: &str| s.parse::<IpNetwork>().expect("cidr");
        assert_eq!(capacity(net("10.244.1.0/24")), 254);
        assert_eq!(capacity(net("10.244.1.0/30")), 2);
        assert_eq!(capacity(net("10.244.1.0/31")), 0);
        assert_eq!(capacity(net("10.244.1.1/32")), 0);
        assert_eq!(capacity(net("fd00:10:244:1::/64")), (1 << 64) - 1);
        assert_eq!(capacity(net("fd00::/127")), 1);
        assert_eq!(capacity(net("fd00::1/128")), 0);
        assert_eq!(capacity(net("::/0")), u128::MAX);
    }

    #[test]
    fn a_range_without_host_addresses_is_exhausted_not_a_panic() {
        let (_d, s) = store();
        for (v4, v6) in [("10.0.0.0/31", None), ("10.0.0.1/32", Some("fd00::1/128"))] {
            let err = s
                .alloc(&owner("a"), &ranges(v4, v6))
                .expect_err("no address");
            assert!(matches!(err, IpamError::Exhausted { .. }), "{v4}: {err}");
        }
    }

    #[test]
    fn allocated_lists_the_addresses_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unborn = IpamStore::new(dir.path().join("podroute"));
        assert_eq!(
            unborn.allocated().expect("no store yet"),
            Vec::<IpAddr>::new()
        );
        let s = unborn.lock(Duration::from_secs(1)).expect("lock");
        let r = ranges("10.0.0.0/24", Some("fd00::/64"));
        let a = s.alloc(&owner("a"), &r).expect("alloc");
        s.alloc(&owner("b"), &r).expect("alloc");
        s.release(&owner("b")).expect("release");
        let mut in_use = unborn.allocated().expect("read");
        in_use.sort();
        assert_eq!(
            in_use,
            a.addresses(),
            "lock and last-v4/last-v6 files are not addresses"
        );
    }

    #[test]
    fn a_record_always_names_its_owner_and_a_killed_allocation_leaves_none() {
        use std::os::unix::fs::MetadataExt;
        let (d, s) = store();
        let dir = d.path().join("net");
        let r = ranges("10.0.0.0/29", Some("fd00::/64"));
        let store = IpamStore::new(&dir);
        // A plugin killed after writing its record, before the lock: nothing is left.
        drop(store.new_record(&owner("killed")));
        let names = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir)
                .expect("read dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&dir), vec!["indexed", "lock"]);
        // Both families' records are the one unnamed file, linked twice.
        let record = store.new_record(&owner("a"));
        assert!(
            matches!(record.file, RecordFile::Unnamed(_)),
            "the test directory has no unnamed files: {:?}",
            record.file
        );
        let a = s.allocate(&record, &r).expect("alloc");
        let mut records = s.records().expect("records");
        records.sort();
        assert_eq!(
            records,
            vec![
                (IpAddr::V4(a.v4.expect("v4")), Some(owner("a"))),
                (IpAddr::V6(a.v6.expect("v6")), Some(owner("a"))),
            ]
        );
        let v4 = fs::metadata(dir.join(a.v4.expect("v4").to_string())).expect("v4 record");
        let v6 = fs::metadata(dir.join(a.v6.expect("v6").to_string())).expect("v6 record");
        assert_eq!((v4.ino(), v4.nlink()), (v6.ino(), 2));
        assert!(!dir.join(SCRATCH_RECORD).exists());
    }

    #[test]
    fn a_record_that_could_not_be_written_fails_only_an_add_that_needs_it() {
        let (_d, s) = store();
        let r = ranges("10.0.0.0/29", None);
        let held = s.alloc(&owner("a"), &r).expect("alloc");
        let failed = |id: &str| NewRecord {
            owner: owner(id),
            file: RecordFile::Failed(io::Error::from_raw_os_error(28)),
        };
        // A repeated ADD of a pod holding its address, on a full disk.
        assert_eq!(s.allocate(&failed("a"), &r).expect("held"), held);
        let err = s.allocate(&failed("b"), &r).expect_err("a new address");
        assert!(err.to_string().contains("No space left on device"), "{err}");
        assert_eq!(
            s.lookup(&owner("b")).expect("lookup"),
            Allocation::default()
        );
    }

    #[test]
    fn unnamed_files_are_given_up_only_where_the_system_has_none() {
        let code = |errno: Errno| io::Error::from_raw_os_error(errno as i32);
        assert!(no_unnamed_files(&code(Errno::EOPNOTSUPP)));
        assert!(no_unnamed_files(&code(Errno::EISDIR)));
        assert!(!no_unnamed_files(&code(Errno::ENOSPC)));
        assert!(!no_unnamed_files(&code(Errno::EACCES)));
    }

    #[test]
    fn without_unnamed_files_the_record_goes_through_a_scratch_file() {
        let (d, s) = store();
        let r = ranges("10.0.0.0/29", None);
        let scratch_record = |id: &str| NewRecord {
            owner: owner(id),
            file: RecordFile::Scratch,
        };
        // What a plugin killed after writing its scratch record leaves behind.
        let dir = d.path().join("net");
        fs::write(dir.join(SCRATCH_RECORD), format_owner(&owner("killed"))).expect("scratch");
        assert_eq!(
            s.records().expect("records"),
            vec![],
            "a scratch file is no record"
        );
        let a = s.allocate(&scratch_record("a"), &r).expect("alloc");
        assert_eq!(a.v4, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(
            s.records().expect("records"),
            vec![(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), Some(owner("a")))]
        );
        assert!(
            !dir.join(SCRATCH_RECORD).exists(),
            "the scratch file is gone"
        );
        // Exhausted: the scratch file goes too.
        for n in 0..5 {
            s.allocate(&scratch_record(&format!("o{n}")), &r)
                .expect("alloc");
        }
        assert!(s.allocate(&scratch_record("full"), &r).is_err());
        assert!(!dir.join(SCRATCH_RECORD).exists());
    }

    #[test]
    fn the_last_address_is_written_in_place_over_any_older_text() {
        use std::os::unix::fs::MetadataExt;
        let (d, s) = store();
        let r = ranges("10.0.0.0/29", None);
        let last = d.path().join("net").join("last-v4");
        // Longer than the padded width and no IPv4 address: allocation starts at the first,
        // and the old text's tail goes.
        fs::write(&last, "x".repeat(100)).expect("last");
        let inode = fs::metadata(&last).expect("last").ino();
        let first = s.alloc(&owner("a"), &r).expect("alloc").v4;
        assert_eq!(first, Some(Ipv4Addr::new(10, 0, 0, 1)));
        let text = fs::read_to_string(&last).expect("last");
        assert_eq!((text.trim(), text.len()), ("10.0.0.1", LAST_WIDTH + 1));
        assert_eq!(fs::metadata(&last).expect("last").ino(), inode, "in place");
        // A shorter text from an older plugin, which truncated it: padded over.
        fs::write(&last, "10.0.0.4").expect("last");
        let next = s.alloc(&owner("b"), &r).expect("alloc").v4;
        assert_eq!(next, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(fs::read_to_string(&last).expect("last").trim(), "10.0.0.5");
    }

    #[test]
    fn a_scratch_file_left_linked_to_a_record_does_not_change_its_owner() {
        let (d, s) = store();
        let r = ranges("10.0.0.0/29", None);
        let killed = s.alloc(&owner("killed"), &r).expect("alloc");
        // What a plugin killed after linking its record, before removing the scratch name,
        // leaves: the scratch name is a second link to the record.
        let dir = d.path().join("net");
        fs::hard_link(dir.join("10.0.0.1"), dir.join(SCRATCH_RECORD)).expect("link");
        let other = s.alloc(&owner("other"), &r).expect("alloc");
        assert_ne!(other.v4, killed.v4);
        assert_eq!(s.lookup(&owner("killed")).expect("lookup"), killed);
        let mut records = s.records().expect("records");
        records.sort();
        assert_eq!(
            records,
            vec![
                (
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    Some(owner("killed"))
                ),
                (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), Some(owner("other"))),
            ]
        );
    }

    #[test]
    fn same_attachment_gets_the_same_addresses() {
        let (_d, s) = store();
        let r = ranges("10.0.0.0/24", Some("fd00::/64"));
        let a = s.alloc(&owner("c"), &r).expect("alloc");
        let b = s.alloc(&owner("c"), &r).expect("alloc");
        assert_eq!(a, b);
        assert_eq!(a.v4, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(a.v6, Some("fd00::1".parse().expect("ip")));
        let other = Attachment {
            container_id: "c".into(),
            ifname: "net1".into(),
        };
        assert_ne!(s.alloc(&other, &r).expect("alloc").v4, a.v4);
    }

    #[test]
    fn release_frees_and_round_robin_does_not_reuse_at_once() {
        let (_d, s) = store();
        let r = ranges("10.0.0.0/29", None);
        let a = s.alloc(&owner("a"), &r).expect("alloc");
        assert_eq!(s.release(&owner("a")).expect("release"), a.addresses());
        assert!(s.release(&owner("a")).expect("release again").is_empty());
        let b = s.alloc(&owner("b"), &r).expect("alloc");
        assert_ne!(a, b, "a just-freed address is not handed out first");
        assert_eq!(
            s.lookup(&owner("a")).expect("lookup"),
            Allocation::default()
        );
    }

    #[test]
    fn gc_keeps_only_valid_attachments() {
        let (_d, s) = store();
        let r = ranges("10.0.0.0/24", Some("fd00::/64"));
        for id in ["a", "b", "c"] {
            s.alloc(&owner(id), &r).expect("alloc");
        }
        // A record truncated by a crash has no readable owner and must go too.
        fs::write(s.dir.join("10.0.0.200"), "").expect("write");
        let released = s.retain(&[owner("b")]).expect("gc");
        assert_eq!(released.len(), 3);
        let left: Vec<_> = s
            .records()
            .expect("records")
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        assert_eq!(left, vec![Some(owner("b")), Some(owner("b"))]);
    }

    /// The store's file names other than records.
    fn index_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(INDEX_PREFIX))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn gc_removes_the_index_entries_of_what_it_frees() {
        let (_d, s) = store();
        let r = ranges("10.0.0.0/24", Some("fd00::/64"));
        for id in ["a", "b"] {
            s.alloc(&owner(id), &r).expect("alloc");
        }
        s.retain(&[owner("b")]).expect("gc");
        assert_eq!(
            index_entries(&s.dir),
            vec!["owner:b:eth0:v4", "owner:b:eth0:v6"]
        );
        assert_eq!(
            s.lookup(&owner("a")).expect("lookup"),
            Allocation::default()
        );
        assert!(s.lookup(&owner("b")).expect("lookup").v6.is_some());
    }

    #[test]
    fn release_leaves_no_index_entry() {
        let (_d, s) = store();
        let r = ranges("10.0.0.0/24", Some("fd00::/64"));
        let a = s.alloc(&owner("a"), &r).expect("alloc");
        assert_eq!(index_entries(&s.dir).len(), 2);
        assert_eq!(s.release(&owner("a")).expect("release"), a.addresses());
        assert_eq!(index_entries(&s.dir), Vec::<String>::new());
    }

    #[test]
    fn an_entry_left_by_a_killed_allocation_holds_nothing() {
        let (_d, s) = store();
        let r = ranges("10.0.0.0/29", None);
        // Killed between its index entry and its record: the entry points at a free address.
        std::os::unix::fs::symlink("10.0.0.1", s.dir.join("owner:killed:eth0:v4")).expect("ln");
        assert_eq!(
            s.lookup(&owner("killed")).expect("lookup"),
            Allocation::default()
        );
        // Another pod takes that address: the old entry now points at a record not its own.
        let b = s.alloc(&owner("b"), &r).expect("alloc");
        assert_eq!(b.v4, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(
            s.lookup(&owner("killed")).expect("lookup"),
            Allocation::default()
        );
        assert!(s.release(&owner("killed")).expect("release").is_empty());
        assert_eq!(
            s.lookup(&owner("b")).expect("lookup"),
            b,
            "b's address stays b's"
        );
        // The killed pod's ADD, retried, gets an address of its own.
        let retried = s.alloc(&owner("killed"), &r).expect("alloc");
        assert_ne!(retried.v4, b.v4);
    }

    #[test]
    fn gc_indexes_a_record_written_without_an_entry() {
        let (_d, s) = store();
        // An older plugin's allocation, after this store was indexed.
        fs::write(s.dir.join("10.0.0.7"), format_owner(&owner("old"))).expect("record");
        assert_eq!(
            s.lookup(&owner("old")).expect("lookup"),
            Allocation::default()
        );
        s.retain(&[owner("old")]).expect("gc");
        assert_eq!(
            s.release(&owner("old")).expect("release"),
            vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))]
        );
        assert_eq!(s.records().expect("records"), vec![]);
    }

    #[test]
    fn gc_removes_an_entry_left_by_a_killed_allocation() {
        let (_d, s) = store();
        std::os::unix::fs::symlink("10.0.0.9", s.dir.join("owner:killed:eth0:v4")).expect("ln");
        s.retain(&[owner("killed")]).expect("gc");
        assert_eq!(index_entries(&s.dir), Vec::<String>::new());
    }

    #[test]
    fn gc_removes_a_scratch_record_left_by_a_killed_plugin() {
        let (_d, s) = store();
        let r = ranges("10.0.0.0/29", None);
        let a = s.alloc(&owner("a"), &r).expect("alloc");
        // Killed after linking its scratch record, before unlinking the scratch name.
        let record = s.dir.join(a.v4.expect("v4").to_string());
        fs::hard_link(&record, s.dir.join(SCRATCH_RECORD)).expect("link");
        s.retain(&[owner("a")]).expect("gc");
        assert!(!s.dir.join(SCRATCH_RECORD).exists());
        assert_eq!(s.lookup(&owner("a")).expect("lookup"), a);
    }

    #[test]
    fn a_store_written_without_the_index_is_indexed_on_first_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = dir.path().join("net");
        // What a plugin before the index left: records, round-robin state, a lock file.
        fs::create_dir_all(&net).expect("mkdir");
        fs::write(net.join("10.0.0.5"), format_owner(&owner("old"))).expect("record");
        fs::write(net.join("fd00::5"), format_owner(&owner("old"))).expect("record");
        fs::write(net.join("last-v4"), "10.0.0.5").expect("last");
        let s = IpamStore::new(&net)
            .lock(Duration::from_secs(1))
            .expect("lock");
        let want = Allocation {
            v4: Some(Ipv4Addr::new(10, 0, 0, 5)),
            v6: Some("fd00::5".parse().expect("ip")),
        };
        assert_eq!(s.lookup(&owner("old")).expect("lookup"), want);
        // A repeated ADD of that pod keeps its addresses; its DEL frees them.
        let r = ranges("10.0.0.0/24", Some("fd00::/64"));
        assert_eq!(s.alloc(&owner("old"), &r).expect("alloc"), want);
        assert_eq!(s.release(&owner("old")).expect("release"), want.addresses());
        assert_eq!(s.records().expect("records"), vec![]);
    }

    #[test]
    fn a_store_that_cannot_be_indexed_still_finds_and_frees_its_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = dir.path().join("net");
        fs::create_dir_all(&net).expect("mkdir");
        fs::write(net.join("10.0.0.5"), format_owner(&owner("old"))).expect("record");
        fs::write(net.join("10.0.0.6"), format_owner(&owner("other"))).expect("record");
        // Where the index entry of "old" goes, something that cannot be replaced by a symlink:
        // indexing fails (as on a full disk).
        let entry = net.join(index_name(&owner("old"), false));
        fs::create_dir_all(entry.join("in-the-way")).expect("obstacle");
        let store = IpamStore::new(&net);
        {
            let s = store
                .lock(Duration::from_secs(1))
                .expect("the lock is still taken");
            assert!(!s.indexed);
            assert_eq!(
                s.lookup(&owner("old")).expect("lookup").v4,
                Some(Ipv4Addr::new(10, 0, 0, 5))
            );
            assert_eq!(
                s.release(&owner("other")).expect("DEL frees it"),
                vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 6))]
            );
            assert!(!net.join("10.0.0.6").exists());
        }
        assert!(!net.join(INDEXED_MARKER).exists());
        // Once the obstacle is gone, the next lock completes the index.
        fs::remove_dir_all(&entry).expect("clear");
        let s = store.lock(Duration::from_secs(1)).expect("lock");
        assert!(s.indexed && net.join(INDEXED_MARKER).exists());
        assert_eq!(
            s.release(&owner("old")).expect("release"),
            vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))]
        );
    }

    #[test]
    fn lock_times_out_while_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = IpamStore::new(dir.path().join("net"));
        let held = store.lock(Duration::from_secs(1)).expect("first lock");
        let err = store
            .lock(Duration::from_millis(30))
            .expect_err("second lock must wait");
        assert_eq!(CniError::from(err).code.as_u32(), 11);
        drop(held);
        // The timed-out waiter's thread may take the lock first; it lets go at once.
        assert!(store.lock(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn concurrent_allocations_never_share_an_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = IpamStore::new(dir.path().join("net"));
        let r = ranges("10.0.0.0/24", Some("fd00::/64"));
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                thread::spawn(move || {
                    let locked = store.lock(Duration::from_secs(10)).expect("lock");
                    locked.alloc(&owner(&format!("c{i}")), &r).expect("alloc")
                })
            })
            .collect();
        let allocs: Vec<Allocation> = handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect();
        let v4: HashSet<_> = allocs.iter().map(|a| a.v4).collect();
        let v6: HashSet<_> = allocs.iter().map(|a| a.v6).collect();
        assert_eq!((v4.len(), v6.len()), (16, 16));
    }
}
