//! Saving and loading an [`Mlp`] as safetensors.
//!
//! Tensors are named like PyTorch's `nn.Sequential` of `nn.Linear` layers —
//! `layers.0.weight` `(out, in)`, `layers.0.bias` — in little-endian f32, so
//! they load into PyTorch or candle directly. The metadata records the
//! architecture (`sizes`, `hidden_activation`) and the input normalization.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, Metadata, TensorView};

use super::Mlp;
use crate::activation::Activation;

/// Metadata key: the format marker.
const FORMAT: &str = "densekit-mlp";
/// How inputs must be normalized for the saved model.
pub const NORMALIZATION: &str = "pixels/255";

/// An error saving or loading a model file.
#[derive(Debug)]
pub struct ModelError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ModelError {}

fn activation_to_string(act: Activation) -> String {
    match act {
        Activation::Identity => "identity".into(),
        Activation::Relu => "relu".into(),
        Activation::LeakyRelu(a) => format!("leaky-relu:{a}"),
        Activation::PRelu(a) => format!("prelu:{a}"),
        Activation::Sigmoid => "sigmoid".into(),
        Activation::Tanh => "tanh".into(),
    }
}

fn activation_from_string(s: &str) -> Option<Activation> {
    let (name, param) = s.split_once(':').map_or((s, None), |(n, p)| (n, Some(p)));
    let slope = || param.and_then(|p| p.parse::<f32>().ok());
    match name {
        "identity" => Some(Activation::Identity),
        "relu" => Some(Activation::Relu),
        "leaky-relu" => slope().map(Activation::LeakyRelu),
        "prelu" => slope().map(Activation::PRelu),
        "sigmoid" => Some(Activation::Sigmoid),
        "tanh" => Some(Activation::Tanh),
        _ => None,
    }
}

impl Mlp {
    /// Writes the model to `path` as safetensors, atomically (see
    /// [`write_atomically`](crate::atomic_file::write_atomically); synced
    /// before the rename), so an interrupted save never leaves a corrupt
    /// model, and removes temporary files an interrupted save left behind.
    ///
    /// # Errors
    /// A [`ModelError`] naming the file if it cannot be written, or if a
    /// weight is NaN or infinite (a diverged network is never saved; the
    /// file at `path`, if any, is left as it was).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let err = |message: String| ModelError {
            path: path.to_path_buf(),
            message,
        };
        if let Some(at) = self.params.iter().position(|p| !p.is_finite()) {
            return Err(err(format!(
                "not saved: parameter {at} is {} (the network diverged)",
                self.params[at]
            )));
        }
        // Weights in PyTorch's (out, in) order, whatever the storage order.
        let bytes: Vec<Vec<u8>> = (0..self.layers())
            .flat_map(|l| {
                let w = self.weight(l);
                let (outputs, inputs) = w.shape();
                let weight = (0..outputs)
                    .flat_map(|o| (0..inputs).map(move |i| w.get(o, i)))
                    .flat_map(f32::to_le_bytes)
                    .collect();
                let bias = self.bias(l).iter().flat_map(|v| v.to_le_bytes()).collect();
                [weight, bias]
            })
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for l in 0..self.layers() {
            let (inputs, outputs) = (self.sizes[l], self.sizes[l + 1]);
            let weight = TensorView::new(Dtype::F32, vec![outputs, inputs], &bytes[2 * l])
                .map_err(|e| err(e.to_string()))?;
            let bias = TensorView::new(Dtype::F32, vec![outputs], &bytes[2 * l + 1])
                .map_err(|e| err(e.to_string()))?;
            views.push((format!("layers.{l}.weight"), weight));
            views.push((format!("layers.{l}.bias"), bias));
        }
        let sizes = self
            .sizes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("sizes".to_string(), sizes),
            (
                "hidden_activation".to_string(),
                activation_to_string(self.hidden),
            ),
            (
                "output".to_string(),
                "logits (softmax cross-entropy)".to_string(),
            ),
            ("normalization".to_string(), NORMALIZATION.to_string()),
        ]);
        let serialized =
            safetensors::serialize(views, Some(metadata)).map_err(|e| err(e.to_string()))?;
        crate::atomic_file::write_atomically(path, &serialized, true)
            .map_err(|e| err(format!("could not save the model: {e}")))
    }

    /// Reads a model written by [`save`](Self::save) (or any safetensors
    /// file with the same names, shapes and metadata).
    ///
    /// Reads no more than it has checked: the 8-byte header length first,
    /// checked against the file's size and safetensors' 100 MB header limit,
    /// then the header, checked against the file's size again and against the
    /// architecture it records, and only then the tensors the model needs.
    /// A truncated, padded, sparse or endless file (`/dev/zero`) is rejected
    /// after reading a few bytes.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let path = std::env::temp_dir().join(format!("densekit-doc-load-{}.safetensors", std::process::id()));
    /// let net = Mlp::new(&[4, 3, 2], Activation::Tanh, 5);
    /// net.save(&path).unwrap();
    /// assert_eq!(Mlp::load(&path).unwrap(), net);
    /// std::fs::write(&path, b"not a model").unwrap();
    /// assert!(Mlp::load(&path).unwrap_err().message.contains("not a safetensors file"));
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    ///
    /// # Errors
    /// A [`ModelError`] naming the file: unreadable or not a regular file,
    /// not safetensors, missing metadata, a missing tensor, a wrong dtype or
    /// shape, sizes that overflow, or NaN or infinite weights (a diverged
    /// model).
    pub fn load(path: &Path) -> Result<Mlp, ModelError> {
        let err = |message: String| ModelError {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let info = file.metadata().map_err(|e| err(e.to_string()))?;
        if !info.is_file() {
            return Err(err("not a regular file".into()));
        }
        read_model(std::io::BufReader::new(file), info.len()).map_err(err)
    }

    /// [`load`](Self::load) from bytes in memory; errors are plain messages.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Mlp, String> {
        read_model(std::io::Cursor::new(bytes), bytes.len() as u64)
    }
}

/// safetensors' own limit on the JSON header (`safetensors::tensor`'s
/// `MAX_HEADER_SIZE`).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Reads a model from a safetensors stream of `len` bytes, checking each
/// length against `len` before reading (or allocating) that much.
fn read_model(mut file: impl Read + Seek, len: u64) -> Result<Mlp, String> {
    let io = |e: std::io::Error| format!("could not read the model: {e}");
    let mut prefix = [0u8; 8];
    if len < 8 {
        return Err(format!(
            "not a safetensors file ({len} bytes, shorter than the 8-byte header length)"
        ));
    }
    file.read_exact(&mut prefix).map_err(io)?;
    let header_len = u64::from_le_bytes(prefix);
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
    file.read_exact(&mut header).map_err(io)?;
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
    let (sizes, hidden) = architecture(&header)?;
    // Every tensor is checked before anything is allocated: the sizes in the
    // metadata are only trusted once the file holds data that large.
    let mut tensors = Vec::with_capacity(2 * (sizes.len() - 1));
    for l in 0..sizes.len() - 1 {
        for (name, shape) in [
            (format!("layers.{l}.weight"), vec![sizes[l + 1], sizes[l]]),
            (format!("layers.{l}.bias"), vec![sizes[l + 1]]),
        ] {
            let info = header
                .info(&name)
                .ok_or_else(|| format!("missing tensor `{name}`"))?;
            if info.dtype != Dtype::F32 {
                return Err(format!("tensor `{name}` is {:?}, expected F32", info.dtype));
            }
            if info.shape != shape {
                return Err(format!(
                    "tensor `{name}` has shape {:?}, but the architecture {sizes:?} needs {shape:?}",
                    info.shape
                ));
            }
            tensors.push((name, info.data_offsets));
        }
    }
    // The tensors' sizes were checked against the file's, so the count is
    // bounded by it (and so cannot overflow).
    let count = tensors.iter().map(|(_, (s, e))| (e - s) / 4).sum();
    let mut net = Mlp::from_parts(&sizes, hidden, vec![0.0; count])?;
    let (mut bytes, mut values) = (Vec::new(), Vec::new());
    let mut read = |(name, (start, end)): &(String, (usize, usize)), values: &mut Vec<f32>| {
        bytes.resize(end - start, 0);
        file.seek(SeekFrom::Start(data_start + *start as u64))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(io)?;
        values.clear();
        values.extend(le_f32s(&bytes));
        match values.iter().all(|v| v.is_finite()) {
            true => Ok(()),
            false => Err(format!(
                "tensor `{name}` holds NaN or infinite values (a diverged model?)"
            )),
        }
    };
    for (l, pair) in tensors.chunks_exact(2).enumerate() {
        // The weight is (out, in) in the file, whatever the storage order.
        read(&pair[0], &mut values)?;
        let inputs = sizes[l];
        let mut w = net.weight_mut(l);
        for (at, &v) in values.iter().enumerate() {
            w.set(at / inputs, at % inputs, v);
        }
        read(&pair[1], &mut values)?;
        let (_, b) = net.layer_ranges(l);
        net.params[b].copy_from_slice(&values);
    }
    Ok(net)
}

/// The layer sizes and hidden activation recorded in a model's metadata.
fn architecture(header: &Metadata) -> Result<(Vec<usize>, Activation), String> {
    let meta = header
        .metadata()
        .as_ref()
        .ok_or("no metadata: not a densekit model")?;
    let get = |key: &str| {
        meta.get(key)
            .ok_or_else(|| format!("metadata has no `{key}`: not a densekit model"))
    };
    if get("format")? != FORMAT {
        return Err(format!(
            "metadata format is `{}`, expected `{FORMAT}`",
            get("format")?
        ));
    }
    let sizes: Vec<usize> = get("sizes")?
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| format!("bad `sizes` metadata `{s}`"))
        })
        .collect::<Result<_, _>>()?;
    let name = get("hidden_activation")?;
    let hidden = activation_from_string(name)
        .ok_or_else(|| format!("unknown hidden activation `{name}`"))?;
    if sizes.len() < 2 || sizes.contains(&0) {
        return Err(format!("invalid layer sizes {sizes:?}"));
    }
    Ok((sizes, hidden))
}

/// Little-endian f32 values, read byte-wise: tensor data need not be
/// aligned for f32.
fn le_f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
