//! A safetensors file read without trusting it: every length is checked
//! against the file's size before that much is read or allocated, and only
//! the tensors asked for are read. Models ([`Mlp::load`](super::Mlp::load))
//! and training checkpoints use it.

use std::io::{Read, Seek, SeekFrom};

use safetensors::tensor::{Dtype, Metadata};

/// safetensors' own limit on the JSON header (`safetensors::tensor`'s
/// `MAX_HEADER_SIZE`).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// An open safetensors stream whose header has been read and checked.
pub(crate) struct TensorFile<R> {
    file: R,
    header: Metadata,
    data_start: u64,
    /// What the file holds, for error messages ("model", "checkpoint").
    kind: &'static str,
}

impl<R: Read + Seek> TensorFile<R> {
    /// Reads and checks the header of a `len`-byte safetensors stream: the
    /// 8-byte header length against `len` and the 100 MB limit, then the
    /// header's tensor sizes against the bytes that follow it.
    pub(crate) fn open(mut file: R, len: u64, kind: &'static str) -> Result<Self, String> {
        if len < 8 {
            return Err(format!(
                "not a safetensors file ({len} bytes, shorter than the 8-byte header length)"
            ));
        }
        let mut prefix = [0u8; 8];
        file.read_exact(&mut prefix)
            .map_err(|e| read_error(kind, e))?;
        let header_len = u64::from_le_bytes(prefix);
        if header_len < 2 {
            return Err(format!(
                "not a safetensors file (its header length is {header_len}: too short for any header)"
            ));
        }
        if header_len > MAX_HEADER_BYTES || header_len > len - 8 {
            return Err(format!(
                "not a safetensors file (its header length, {header_len} bytes, exceeds {})",
                if header_len > MAX_HEADER_BYTES {
                    format!("the {MAX_HEADER_BYTES}-byte limit")
                } else {
                    format!("the {} bytes that follow it", len - 8)
                }
            ));
        }
        // Bounded by the file's size and 100 MB, both checked above.
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)
            .map_err(|e| read_error(kind, e))?;
        let header: Metadata =
            serde_json::from_slice(&header).map_err(|e| format!("not a safetensors file ({e})"))?;
        let data_start = 8 + header_len;
        let data_len = len - data_start;
        if header.data_len() as u64 != data_len {
            return Err(format!(
                "corrupt safetensors data (the header describes {} bytes of tensors, the file holds {data_len})",
                header.data_len()
            ));
        }
        Ok(TensorFile {
            file,
            header,
            data_start,
            kind,
        })
    }

    /// Checks the `format` metadata (what kind of densekit file this is).
    pub(crate) fn check_format(&self, expected: &str) -> Result<(), String> {
        match self.metadata("format")? {
            format if format == expected => Ok(()),
            format => Err(format!(
                "metadata format is `{format}`, expected `{expected}`"
            )),
        }
    }

    /// All of the metadata.
    pub(crate) fn all_metadata(&self) -> std::collections::HashMap<String, String> {
        self.header.metadata().clone().unwrap_or_default()
    }

    /// The metadata value under `key`.
    pub(crate) fn metadata(&self, key: &str) -> Result<&str, String> {
        self.header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(key))
            .map(String::as_str)
            .ok_or_else(|| format!("metadata has no `{key}`: not a densekit {}", self.kind))
    }

    /// Every tensor's name and shape, sorted by name.
    pub(crate) fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut all: Vec<_> = self
            .header
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.shape.clone()))
            .collect();
        all.sort();
        all
    }

    /// Checks that tensor `name` exists as f32 of this `shape` (before
    /// anything of that size is allocated).
    pub(crate) fn check_f32(&self, name: &str, shape: &[usize], why: &str) -> Result<(), String> {
        let info = self
            .header
            .info(name)
            .ok_or_else(|| format!("missing tensor `{name}`"))?;
        if info.dtype != Dtype::F32 {
            return Err(format!("tensor `{name}` is {:?}, expected F32", info.dtype));
        }
        if info.shape != shape {
            return Err(format!(
                "tensor `{name}` has shape {:?}, but {why} needs {shape:?}",
                info.shape
            ));
        }
        Ok(())
    }

    /// Reads tensor `name` (checked by [`check_f32`](Self::check_f32)) into
    /// `out`; NaN or infinite values are an error.
    pub(crate) fn read_f32(&mut self, name: &str, out: &mut Vec<f32>) -> Result<(), String> {
        let info = self
            .header
            .info(name)
            .ok_or_else(|| format!("missing tensor `{name}`"))?;
        let (start, end) = info.data_offsets;
        // The header's offsets were checked against the file's size.
        let mut bytes = vec![0u8; end - start];
        self.file
            .seek(SeekFrom::Start(self.data_start + start as u64))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| read_error(self.kind, e))?;
        out.clear();
        // Byte-wise: tensor data need not be aligned for f32.
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        match out.iter().all(|v| v.is_finite()) {
            true => Ok(()),
            false => Err(format!(
                "tensor `{name}` holds NaN or infinite values (a diverged {}?)",
                self.kind
            )),
        }
    }
}

fn read_error(kind: &str, e: std::io::Error) -> String {
    format!("could not read the {kind}: {e}")
}
