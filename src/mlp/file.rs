//! Saving and loading an [`Mlp`] as safetensors.
//!
//! Tensors are named like PyTorch's `nn.Sequential` of `nn.Linear` layers —
//! `layers.0.weight` `(out, in)`, `layers.0.bias` — in little-endian f32, so
//! they load into PyTorch or candle directly. The metadata records the
//! architecture (`sizes`, `hidden_activation`) and the input normalization.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use super::Mlp;
use super::tensor_file::TensorFile;
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

pub(crate) fn activation_to_string(act: Activation) -> String {
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

/// Reads a model from a safetensors stream of `len` bytes, checking each
/// length against `len` before reading (or allocating) that much.
fn read_model(file: impl Read + Seek, len: u64) -> Result<Mlp, String> {
    let mut file = TensorFile::open(file, len, "model")?;
    file.check_format(FORMAT)?;
    let (sizes, hidden) = architecture(&file)?;
    // Every tensor is checked before anything is allocated: the sizes in the
    // metadata are only trusted once the file holds data that large.
    let why = format!("the architecture {sizes:?}");
    for l in 0..sizes.len() - 1 {
        file.check_f32(
            &format!("layers.{l}.weight"),
            &[sizes[l + 1], sizes[l]],
            &why,
        )?;
        file.check_f32(&format!("layers.{l}.bias"), &[sizes[l + 1]], &why)?;
    }
    // The tensors were checked against the file's size, so the count is
    // bounded by it.
    let count = super::param_count(&sizes).ok_or("layer sizes overflow")?;
    let mut net = Mlp::from_parts(&sizes, hidden, vec![0.0; count])?;
    let mut values = Vec::new();
    for (l, &inputs) in sizes[..sizes.len() - 1].iter().enumerate() {
        // The weight is (out, in) in the file, whatever the storage order.
        file.read_f32(&format!("layers.{l}.weight"), &mut values)?;
        let mut w = net.weight_mut(l);
        for (at, &v) in values.iter().enumerate() {
            w.set(at / inputs, at % inputs, v);
        }
        file.read_f32(&format!("layers.{l}.bias"), &mut values)?;
        let (_, b) = net.layer_ranges(l);
        net.params[b].copy_from_slice(&values);
    }
    Ok(net)
}

/// The layer sizes and hidden activation recorded in a model's (or a
/// checkpoint's) metadata.
pub(crate) fn architecture<R: Read + Seek>(
    file: &TensorFile<R>,
) -> Result<(Vec<usize>, Activation), String> {
    let sizes: Vec<usize> = file
        .metadata("sizes")?
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| format!("bad `sizes` metadata `{s}`"))
        })
        .collect::<Result<_, _>>()?;
    let name = file.metadata("hidden_activation")?;
    let hidden = activation_from_string(name)
        .ok_or_else(|| format!("unknown hidden activation `{name}`"))?;
    if sizes.len() < 2 || sizes.contains(&0) {
        return Err(format!("invalid layer sizes {sizes:?}"));
    }
    Ok((sizes, hidden))
}
