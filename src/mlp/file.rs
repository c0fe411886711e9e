//! Saving and loading an [`Mlp`] as safetensors.
//!
//! Tensors are named like PyTorch's `nn.Sequential` of `nn.Linear` layers —
//! `layers.0.weight` `(out, in)`, `layers.0.bias` — in little-endian f32, so
//! they load into PyTorch or candle directly. The metadata records the
//! architecture (`sizes`, `hidden_activation`) and the input normalization.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

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
    /// Writes the model to `path` as safetensors, atomically: the bytes go to
    /// a temporary file beside it, which is synced and then renamed over
    /// `path`, so an interrupted save never leaves a corrupt model.
    ///
    /// # Errors
    /// A [`ModelError`] naming the file if it cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let err = |message: String| ModelError {
            path: path.to_path_buf(),
            message,
        };
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
        let file_name = path
            .file_name()
            .ok_or_else(|| err("not a file path".into()))?;
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&serialized)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(format!("could not save the model: {e}"))
        })
    }

    /// Reads a model written by [`save`](Self::save) (or any safetensors
    /// file with the same names, shapes and metadata).
    ///
    /// # Errors
    /// A [`ModelError`] naming the file: unreadable, not safetensors, missing
    /// metadata, a missing tensor, a wrong dtype or shape.
    pub fn load(path: &Path) -> Result<Mlp, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Mlp::from_safetensors(&bytes).map_err(|message| ModelError {
            path: path.to_path_buf(),
            message,
        })
    }

    /// [`load`](Self::load) from bytes in memory; errors are plain messages.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Mlp, String> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| format!("not a safetensors file ({e})"))?;
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
        let hidden = activation_from_string(get("hidden_activation")?).ok_or_else(|| {
            format!(
                "unknown hidden activation `{}`",
                get("hidden_activation").unwrap_or(&String::new())
            )
        })?;
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(format!("invalid layer sizes {sizes:?}"));
        }
        let tensors = SafeTensors::deserialize(bytes)
            .map_err(|e| format!("corrupt safetensors data ({e})"))?;
        // Every tensor is checked before anything is allocated: the sizes in
        // the metadata are only trusted once the file holds data that large.
        let mut views = Vec::with_capacity(2 * (sizes.len() - 1));
        for l in 0..sizes.len() - 1 {
            for (name, shape) in [
                (format!("layers.{l}.weight"), vec![sizes[l + 1], sizes[l]]),
                (format!("layers.{l}.bias"), vec![sizes[l + 1]]),
            ] {
                let view = tensors
                    .tensor(&name)
                    .map_err(|_| format!("missing tensor `{name}`"))?;
                if view.dtype() != Dtype::F32 {
                    return Err(format!(
                        "tensor `{name}` is {:?}, expected F32",
                        view.dtype()
                    ));
                }
                if view.shape() != shape.as_slice() {
                    return Err(format!(
                        "tensor `{name}` has shape {:?}, but the architecture {sizes:?} needs {shape:?}",
                        view.shape()
                    ));
                }
                views.push(view);
            }
        }
        let count = views.iter().map(|v| v.data().len() / 4).sum();
        let mut net = Mlp::from_parts(&sizes, hidden, vec![0.0; count])?;
        for (l, pair) in views.chunks_exact(2).enumerate() {
            // The weight is (out, in) in the file, whatever the storage order.
            let inputs = sizes[l];
            let mut w = net.weight_mut(l);
            for (at, v) in le_f32s(pair[0].data()).enumerate() {
                w.set(at / inputs, at % inputs, v);
            }
            let (_, b) = net.layer_ranges(l);
            for (p, v) in net.params[b].iter_mut().zip(le_f32s(pair[1].data())) {
                *p = v;
            }
        }
        Ok(net)
    }
}

/// Little-endian f32 values, read byte-wise: tensor data need not be
/// aligned for f32.
fn le_f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
