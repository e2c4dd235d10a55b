//! Decision record files (`action_record.csv`, JSON lines), appended and flushed per batch.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use banhammer_core::DecisionEvent;

use crate::record::{write_decision, DecisionFormat};

/// A file that decisions are appended to, one line each.
#[derive(Debug)]
pub struct DecisionFile {
    out: BufWriter<File>,
    format: DecisionFormat,
}

impl DecisionFile {
    /// Opens `path` for appending (creating it).
    pub fn append(path: &Path, format: DecisionFormat) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DecisionFile {
            out: BufWriter::new(file),
            format,
        })
    }

    /// Buffers one decision.
    pub fn write(&mut self, d: &DecisionEvent) -> io::Result<()> {
        write_decision(&mut self.out, d, self.format)
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
