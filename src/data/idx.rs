//! IDX files (the MNIST format), raw or gzipped.
//!
//! An IDX file is a big-endian header, `0x00 0x00 <type> <ndim>` followed by
//! `ndim` u32 dimensions, then the data. MNIST uses unsigned bytes (`type =
//! 0x08`): labels are 1-D (magic 2049), images 3-D (magic 2051).
//!
//! Gzip is detected by its magic bytes (`1f 8b`), not by the file name.
//! Nothing is allocated beyond what the input really contains: the header's
//! claimed size only bounds how much is read, so a header claiming billions of
//! images in a small file fails cleanly instead of allocating terabytes.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
///
/// ```
/// use densekit::data::idx::LABELS_MAGIC;
/// // The first four bytes of train-labels-idx1-ubyte.
/// assert_eq!(LABELS_MAGIC.to_be_bytes(), [0, 0, 8, 1]);
/// ```
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
///
/// ```
/// use densekit::data::idx::IMAGES_MAGIC;
/// // The first four bytes of train-images-idx3-ubyte.
/// assert_eq!(IMAGES_MAGIC.to_be_bytes(), [0, 0, 8, 3]);
/// ```
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// An error reading a data file: which file, and what is wrong with it.
///
/// ```
/// use densekit::data::idx::{read_idx, DataErrorKind, LABELS_MAGIC};
/// let err = read_idx("/no/such/labels", LABELS_MAGIC).unwrap_err();
/// assert!(matches!(err.kind, DataErrorKind::Io(_)));
/// assert!(err.to_string().starts_with("/no/such/labels: "));
/// ```
#[derive(Debug)]
pub struct DataError {
    /// The file involved.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: DataErrorKind,
}

/// What went wrong with a data file.
///
/// ```
/// use densekit::data::idx::{read_idx, DataErrorKind, IMAGES_MAGIC, LABELS_MAGIC};
/// let path = std::env::temp_dir().join(format!("densekit-doc-kind-{}", std::process::id()));
/// // A labels file where images are expected.
/// let mut bytes = LABELS_MAGIC.to_be_bytes().to_vec();
/// bytes.extend(1u32.to_be_bytes());
/// bytes.push(3);
/// std::fs::write(&path, bytes).unwrap();
/// let err = read_idx(&path, IMAGES_MAGIC).unwrap_err();
/// assert!(matches!(err.kind, DataErrorKind::BadMagic { expected: IMAGES_MAGIC, found: LABELS_MAGIC }));
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug)]
pub enum DataErrorKind {
    /// The file could not be opened or read.
    Io(io::Error),
    /// The file is shorter than its header says (or than a header).
    Truncated {
        /// Bytes the header requires.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The file has bytes after the data its header describes.
    TrailingBytes {
        /// Bytes the header describes.
        expected: u64,
    },
    /// The magic number is not the expected one.
    BadMagic {
        /// The magic number required.
        expected: u32,
        /// The magic number found.
        found: u32,
    },
    /// The header's dimensions multiply to more than addressable.
    Overflow,
    /// Anything else: a message.
    Invalid(String),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            DataErrorKind::Io(e) => write!(f, "{path}: {e}"),
            DataErrorKind::Truncated { expected, found } => write!(
                f,
                "{path}: truncated: the header describes {expected} bytes but the file has {found}"
            ),
            DataErrorKind::TrailingBytes { expected } => write!(
                f,
                "{path}: unexpected bytes after the {expected} bytes the header describes"
            ),
            DataErrorKind::BadMagic { expected, found } => write!(
                f,
                "{path}: not an IDX file of the expected kind: magic number {found:#010x}, expected {expected:#010x}"
            ),
            DataErrorKind::Overflow => write!(f, "{path}: the header's dimensions overflow"),
            DataErrorKind::Invalid(msg) => write!(f, "{path}: {msg}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            DataErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// A parsed IDX file of unsigned bytes.
///
/// ```
/// use densekit::data::{idx::Idx, Dataset};
/// // Two 2×2 images and their labels, as read from IDX files.
/// let images = Idx { dims: vec![2, 2, 2], data: vec![0, 255, 0, 0, 9, 9, 9, 9] };
/// let labels = Idx { dims: vec![2], data: vec![4, 7] };
/// let data = Dataset::from_idx(images, labels).unwrap();
/// assert_eq!((data.len(), data.image_shape()), (2, Some((2, 2))));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions, outermost first (`[count, rows, cols]` for images).
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes with the given magic number
/// ([`LABELS_MAGIC`] or [`IMAGES_MAGIC`]), raw or gzipped.
///
/// ```
/// use densekit::data::idx::{read_idx, LABELS_MAGIC};
/// let path = std::env::temp_dir().join(format!("densekit-doc-labels-{}", std::process::id()));
/// // Magic, one dimension (3 labels), then the labels.
/// let mut bytes = LABELS_MAGIC.to_be_bytes().to_vec();
/// bytes.extend(3u32.to_be_bytes());
/// bytes.extend([7u8, 0, 2]);
/// std::fs::write(&path, bytes).unwrap();
/// let idx = read_idx(&path, LABELS_MAGIC).unwrap();
/// assert_eq!((idx.dims, idx.data), (vec![3], vec![7, 0, 2]));
/// # std::fs::remove_file(&path).unwrap();
/// ```
///
/// # Errors
/// A [`DataError`] naming the file: unreadable, bad magic, truncated,
/// trailing bytes, or overflowing dimensions.
pub fn read_idx(path: impl AsRef<Path>, magic: u32) -> Result<Idx, DataError> {
    let path = path.as_ref();
    let err = |kind| DataError {
        path: path.to_path_buf(),
        kind,
    };
    let file = File::open(path).map_err(|e| err(DataErrorKind::Io(e)))?;
    parse_idx(file, magic).map_err(err)
}

/// [`read_idx`] on any reader (raw or gzip bytes); errors carry no path.
///
/// ```
/// use densekit::data::idx::{parse_idx, LABELS_MAGIC};
/// let bytes = [0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1];
/// let idx = parse_idx(&bytes[..], LABELS_MAGIC).unwrap();
/// assert_eq!((idx.dims, idx.data), (vec![3], vec![7, 2, 1]));
/// ```
///
/// # Errors
/// As [`read_idx`].
pub fn parse_idx(reader: impl Read, magic: u32) -> Result<Idx, DataErrorKind> {
    let mut reader = io::BufReader::new(reader);
    let mut peek = [0u8; 2];
    let got = read_up_to(&mut reader, &mut peek)?;
    let prefix = io::Cursor::new(peek[..got].to_vec());
    if got == 2 && peek == [0x1f, 0x8b] {
        parse_raw(flate2::read::GzDecoder::new(prefix.chain(reader)), magic)
    } else {
        parse_raw(prefix.chain(reader), magic)
    }
}

fn parse_raw(mut reader: impl Read, magic: u32) -> Result<Idx, DataErrorKind> {
    let mut word = [0u8; 4];
    let header_len = |ndim: u64| 4 + 4 * ndim;
    if read_up_to(&mut reader, &mut word)? < 4 {
        return Err(DataErrorKind::Truncated {
            expected: 4,
            found: 0,
        });
    }
    let found = u32::from_be_bytes(word);
    if found != magic {
        return Err(DataErrorKind::BadMagic {
            expected: magic,
            found,
        });
    }
    let ndim = (magic & 0xff) as usize;
    let mut dims = Vec::with_capacity(ndim);
    for d in 0..ndim {
        if read_up_to(&mut reader, &mut word)? < 4 {
            return Err(DataErrorKind::Truncated {
                expected: header_len(ndim as u64),
                found: header_len(d as u64),
            });
        }
        dims.push(u32::from_be_bytes(word) as usize);
    }
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or(DataErrorKind::Overflow)?;
    let expected = header_len(ndim as u64) + len as u64;
    // Read at most one byte more than the header describes; the vector grows
    // with the bytes actually present, never with the claimed size.
    let mut data = Vec::new();
    reader
        .take(len as u64 + 1)
        .read_to_end(&mut data)
        .map_err(io_or_corrupt)?;
    if data.len() < len {
        return Err(DataErrorKind::Truncated {
            expected,
            found: header_len(ndim as u64) + data.len() as u64,
        });
    }
    if data.len() > len {
        return Err(DataErrorKind::TrailingBytes { expected });
    }
    Ok(Idx { dims, data })
}

/// Fills as much of `buf` as the reader has, returning how much that was.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, DataErrorKind> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_or_corrupt(e)),
        }
    }
    Ok(filled)
}

/// Corrupt gzip streams surface as I/O errors; say so plainly.
fn io_or_corrupt(e: io::Error) -> DataErrorKind {
    match e.kind() {
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            DataErrorKind::Invalid(format!("corrupt gzip data ({e})"))
        }
        _ => DataErrorKind::Io(e),
    }
}
