//! Reading a workload's logs: [`read_log`] for a range, [`Follow`] for `tail -f` by polling.
//!
//! Reads are plain blocking file reads of at most `max_bytes`; they are short, but a server serving
//! many large reads at once may prefer to run them in `tokio::task::spawn_blocking`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::sleep;

use crate::error::ExecError;
use crate::record::{AttemptPaths, Stream};

/// A piece of a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    /// The bytes read (raw: a chunk may end inside a UTF-8 character).
    pub data: Vec<u8>,
    /// Where the next read should start.
    pub next_offset: u64,
    /// The file's size when it was read.
    pub size: u64,
}

/// Reads up to `max_bytes` of `stream` of an attempt, starting at byte `offset`.
///
/// An offset at or past the end gives an empty chunk. A log that does not exist (an attempt that
/// never started, or one cleaned up) is an [`ExecError::Io`] with kind `NotFound`.
pub fn read_log(
    log_dir: &Path,
    id: &str,
    attempt: u32,
    stream: Stream,
    offset: u64,
    max_bytes: usize,
) -> Result<LogChunk, ExecError> {
    let paths = AttemptPaths::new(log_dir, id, attempt)?;
    read_range(paths.log(stream), offset, max_bytes)
}

fn read_range(path: &Path, offset: u64, max_bytes: usize) -> Result<LogChunk, ExecError> {
    let err = |e: io::Error| ExecError::io(path, e);
    let mut file = File::open(path).map_err(err)?;
    let size = file.metadata().map_err(err)?.len();
    if offset >= size || max_bytes == 0 {
        return Ok(LogChunk {
            data: Vec::new(),
            next_offset: offset,
            size,
        });
    }
    file.seek(SeekFrom::Start(offset)).map_err(err)?;
    let want = (size - offset).min(u64::try_from(max_bytes).unwrap_or(u64::MAX));
    let mut data = Vec::with_capacity(usize::try_from(want).unwrap_or(max_bytes));
    file.take(want).read_to_end(&mut data).map_err(err)?;
    let read = u64::try_from(data.len()).unwrap_or(want);
    Ok(LogChunk {
        data,
        next_offset: offset + read,
        size,
    })
}

/// Follows one log of one attempt, like `tail -f`, by polling; ends when the attempt's exit is
/// recorded and everything before it has been read.
#[derive(Clone, Debug)]
pub struct Follow {
    log: PathBuf,
    exit: PathBuf,
    offset: u64,
    max_bytes: usize,
    poll: Duration,
}

impl Follow {
    /// Follows `stream` of an attempt from byte `offset`, returning at most `max_bytes` per chunk
    /// and looking for new bytes every `poll`.
    pub fn new(
        log_dir: &Path,
        id: &str,
        attempt: u32,
        stream: Stream,
        offset: u64,
        max_bytes: usize,
        poll: Duration,
    ) -> Result<Self, ExecError> {
        let paths = AttemptPaths::new(log_dir, id, attempt)?;
        Ok(Follow {
            log: paths.log(stream).to_path_buf(),
            exit: paths.exit,
            offset,
            max_bytes: max_bytes.max(1),
            poll,
        })
    }

    /// The offset the next chunk starts at.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Waits for the next bytes; `Ok(None)` once the attempt has ended and all of its log is read.
    ///
    /// For an attempt whose server restarted, the end is seen only once its exit is recorded
    /// ([`crate::Adopted::wait`] does that); stop following a lost attempt by dropping this.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, ExecError> {
        loop {
            // Look for the exit before reading, so bytes written just before it are not missed.
            let ended = self.exit.exists();
            let chunk = read_range(&self.log, self.offset, self.max_bytes)?;
            if !chunk.data.is_empty() {
                self.offset = chunk.next_offset;
                return Ok(Some(chunk.data));
            }
            if ended {
                return Ok(None);
            }
            sleep(self.poll).await;
        }
    }
}
