//! Saving and loading an [`Mlp`] as safetensors.
//!
//! Tensors are named like PyTorch's `nn.Sequential` of `nn.Linear` layers —
//! `layers.0.weight` `(out, in)`, `layers.0.bias` — in little-endian f32, so
//! they load into PyTorch or candle directly. The metadata records the
//! architecture (`sizes`, `hidden_activation`), and any notes the caller
//! adds (`train_mnist` adds the input normalization and what the outputs
//! mean).
//! A PyTorch model saved with safetensors, without that metadata, loads with
//! [`Mlp::load_pytorch`].

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
/// The `normalization` note of a model trained on pixels read as
/// `pixel / 255` (see [`Mlp::save_with_metadata`]).
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::mlp::{Mlp, NORMALIZATION};
/// let path = std::env::temp_dir().join(format!("densekit-doc-norm-{}.safetensors", std::process::id()));
/// Mlp::new(&[4, 2], Activation::Relu, 1).save_with_metadata(&path, &[("normalization", NORMALIZATION)]).unwrap();
/// assert_eq!(Mlp::metadata(&path).unwrap()["normalization"], "pixels/255");
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub const NORMALIZATION: &str = "pixels/255";

/// An error saving or loading a model file.
///
/// ```
/// use densekit::mlp::Mlp;
/// let err = Mlp::load("/no/such/model.safetensors").unwrap_err();
/// assert_eq!(err.path, std::path::Path::new("/no/such/model.safetensors"));
/// assert!(err.to_string().starts_with("/no/such/model.safetensors: "));
/// ```
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

impl Mlp {
    /// Writes the model to `path` as safetensors, atomically (see
    /// [`write_atomically`](crate::atomic_file::write_atomically); synced
    /// before the rename), so an interrupted save never leaves a corrupt
    /// model, and removes temporary files an interrupted save left behind.
    /// Any path type works: `&str`, `String`, `&Path`, `PathBuf`.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let dir = std::env::temp_dir().join(format!("densekit-doc-save-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let path: String = format!("{}/model.safetensors", dir.display());
    /// let net = Mlp::new(&[4, 3, 2], Activation::Relu, 1);
    /// net.save(path.as_str()).unwrap(); // a &str; a String, &Path or PathBuf work too
    /// assert_eq!(Mlp::load(&path).unwrap(), net);
    /// std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    ///
    /// # Errors
    /// A [`ModelError`] naming the file if it cannot be written, or if a
    /// weight is NaN or infinite (a diverged network is never saved; the
    /// file at `path`, if any, is left as it was).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        self.save_with_metadata(path, &[])
    }

    /// [`save`](Self::save), with `notes` (key, value) added to the file's
    /// metadata: what the model file cannot know, such as how its inputs
    /// were normalized or what its outputs mean. [`load`](Self::load)
    /// ignores them; [`metadata`](Self::metadata) reads them back.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::{Mlp, NORMALIZATION};
    /// let path = std::env::temp_dir().join(format!("densekit-doc-notes-{}.safetensors", std::process::id()));
    /// let net = Mlp::new(&[4, 3, 2], Activation::Relu, 1);
    /// net.save_with_metadata(&path, &[("normalization", NORMALIZATION)]).unwrap();
    /// assert_eq!(Mlp::metadata(&path).unwrap()["normalization"], "pixels/255");
    /// // A key the format uses itself is refused.
    /// assert!(net.save_with_metadata(&path, &[("sizes", "1,2")]).is_err());
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`save`](Self::save), or if a note's key is one the format uses
    /// (`format`, `sizes`, `hidden_activation`).
    pub fn save_with_metadata(
        &self,
        path: impl AsRef<Path>,
        notes: &[(&str, &str)],
    ) -> Result<(), ModelError> {
        let path = path.as_ref();
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
        // Learned PReLU slopes as `nn.PReLU` modules' weights, shape [1], in
        // a list beside the layers: `activations.{l}.weight`.
        let slopes: Vec<[u8; 4]> = self
            .prelu_slopes()
            .iter()
            .map(|s| s.to_le_bytes())
            .collect();
        for (l, slope) in slopes.iter().enumerate() {
            let view =
                TensorView::new(Dtype::F32, vec![1], slope).map_err(|e| err(e.to_string()))?;
            views.push((slope_name(l), view));
        }
        let sizes = self
            .sizes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("sizes".to_string(), sizes),
            ("hidden_activation".to_string(), self.hidden.to_string()),
        ]);
        for &(key, value) in notes {
            if metadata.contains_key(key) {
                return Err(err(format!(
                    "not saved: the metadata key `{key}` belongs to the format"
                )));
            }
            metadata.insert(key.to_string(), value.to_string());
        }
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
    pub fn load(path: impl AsRef<Path>) -> Result<Mlp, ModelError> {
        read_file(path.as_ref(), read_model)
    }

    /// Loads the `nn.Linear` layers of a PyTorch model saved with
    /// safetensors (`safetensors.torch.save_file(model.state_dict(), path)`),
    /// with or without densekit's metadata: an `nn.Sequential` of `Linear`
    /// layers and parameter-free activations, its tensors named `0.weight`,
    /// `0.bias`, `2.weight` … (or under one module name, `layers.0.weight`
    /// …). The sizes come from the weights' shapes; the file does not say
    /// which activation sits between the layers, so the caller does
    /// (`hidden`); the output layer is linear (logits), as in [`Mlp`].
    /// `nn.PReLU()` modules between the layers (one slope each, 1-D
    /// `weight` tensors such as `1.weight`) load as the learned slopes of
    /// an [`Activation::PRelu`] network; without them the slope given is
    /// used.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::gemm::{MatRef, Par};
    /// use densekit::mlp::{Mlp, MlpWorkspace};
    /// // tests/fixtures/pytorch_mlp.safetensors: nn.Sequential(Linear(6, 5),
    /// // ReLU(), Linear(5, 3)), written by benches/peers/pytorch_fixture.py.
    /// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pytorch_mlp.safetensors");
    /// let net = Mlp::load_pytorch(path, Activation::Relu).unwrap();
    /// assert_eq!(net.sizes(), &[6, 5, 3]);
    /// let mut ws = MlpWorkspace::new();
    /// let logits = net.forward(MatRef::from_row_major(&[0.5; 6], 1, 6), &mut ws, Par::Seq);
    /// assert_eq!(logits.len(), 3);
    /// ```
    ///
    /// # Errors
    /// A [`ModelError`] naming the file: unreadable, not safetensors, no
    /// Linear weights, layers that do not chain (`in` of one ≠ `out` of the
    /// one before), a missing bias, a tensor that belongs to no Linear layer
    /// (a PReLU slope, a batch norm), a dtype other than f32, or NaN or
    /// infinite values.
    pub fn load_pytorch(path: impl AsRef<Path>, hidden: Activation) -> Result<Mlp, ModelError> {
        read_file(path.as_ref(), |file, len| read_pytorch(file, len, hidden))
    }

    /// The metadata of a safetensors file (a model's architecture and the
    /// notes of [`save_with_metadata`](Self::save_with_metadata)), read
    /// without its tensors.
    ///
    /// # Errors
    /// A [`ModelError`] naming the file if it is unreadable or not
    /// safetensors.
    ///
    /// # Examples
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let path = std::env::temp_dir().join(format!("densekit-doc-meta-{}.safetensors", std::process::id()));
    /// Mlp::new(&[3, 2], Activation::Tanh, 1).save_with_metadata(&path, &[("data", "iris")]).unwrap();
    /// let notes = Mlp::metadata(&path).unwrap();
    /// assert_eq!(notes["data"], "iris");
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn metadata(path: impl AsRef<Path>) -> Result<HashMap<String, String>, ModelError> {
        read_file(path.as_ref(), |file, len| {
            Ok(TensorFile::open(file, len, "model")?.all_metadata())
        })
    }

    /// [`load`](Self::load) from bytes in memory; errors are plain messages.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    ///
    /// # Examples
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let net = Mlp::new(&[3, 4, 2], Activation::Relu, 5);
    /// let path = std::env::temp_dir().join(format!("densekit-doc-bytes-{}.safetensors", std::process::id()));
    /// net.save(&path).unwrap();
    /// let bytes = std::fs::read(&path).unwrap();
    /// assert_eq!(Mlp::from_safetensors(&bytes).unwrap(), net);
    /// assert!(Mlp::from_safetensors(b"not a model").is_err());
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn from_safetensors(bytes: &[u8]) -> Result<Mlp, String> {
        read_model(std::io::Cursor::new(bytes), bytes.len() as u64)
    }
}

/// Opens the regular file at `path` and reads a model from it with `read`
/// (given the stream and its length); any error names the file.
fn read_file<T>(
    path: &Path,
    read: impl FnOnce(std::io::BufReader<std::fs::File>, u64) -> Result<T, String>,
) -> Result<T, ModelError> {
    let err = |message: String| ModelError {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let info = file.metadata().map_err(|e| err(e.to_string()))?;
    if !info.is_file() {
        return Err(err("not a regular file".into()));
    }
    read(std::io::BufReader::new(file), info.len()).map_err(err)
}

/// Reads a model from a safetensors stream of `len` bytes, checking each
/// length against `len` before reading (or allocating) that much.
fn read_model(file: impl Read + Seek, len: u64) -> Result<Mlp, String> {
    let mut file = TensorFile::open(file, len, "model")?;
    file.check_format(FORMAT).map_err(|e| {
        format!(
            "{e} (a PyTorch state_dict without densekit's metadata loads with Mlp::load_pytorch)"
        )
    })?;
    let (sizes, hidden) = architecture(&file)?;
    let names: Vec<String> = (0..sizes.len() - 1)
        .map(|l| format!("layers.{l}."))
        .collect();
    let why = format!("the architecture {sizes:?}");
    // A PReLU model written before slopes were learned has none: it keeps
    // the slope its metadata names.
    let slopes: Vec<String> = match hidden {
        Activation::PRelu(_) => (0..sizes.len() - 2).map(slope_name).collect(),
        _ => vec![],
    };
    let slopes = match slopes.first() {
        Some(first) if file.shapes().iter().all(|(n, _)| n != first) => vec![],
        _ => slopes,
    };
    read_layers(&mut file, &names, &slopes, &sizes, hidden, &why)
}

/// The tensor name of hidden layer `l`'s learned PReLU slope.
fn slope_name(l: usize) -> String {
    format!("activations.{l}.weight")
}

/// Builds the network of `sizes` from the tensors `{prefix}weight`
/// `(out, in)` and `{prefix}bias` of each layer; `why` names where the
/// sizes came from, for a shape error.
fn read_layers<R: Read + Seek>(
    file: &mut TensorFile<R>,
    prefixes: &[String],
    slopes: &[String],
    sizes: &[usize],
    hidden: Activation,
    why: &str,
) -> Result<Mlp, String> {
    // Every tensor is checked before anything is allocated: the sizes are
    // only trusted once the file holds data that large.
    for (l, prefix) in prefixes.iter().enumerate() {
        file.check_f32(&format!("{prefix}weight"), &[sizes[l + 1], sizes[l]], why)?;
        file.check_f32(&format!("{prefix}bias"), &[sizes[l + 1]], why)?;
    }
    for name in slopes {
        file.check_f32(name, &[1], "a PReLU slope")?;
    }
    // The tensors were checked against the file's size, so the count is
    // bounded by it.
    let count = super::total_param_count(sizes, hidden).ok_or("layer sizes overflow")?;
    let mut params = vec![0.0; count];
    if let Activation::PRelu(a) = hidden {
        params[super::counted(sizes)..].fill(a);
    }
    let mut net = Mlp::from_parts(sizes, hidden, params)?;
    let start = super::counted(sizes);
    let mut slope = Vec::new();
    for (l, name) in slopes.iter().enumerate() {
        file.read_f32(name, &mut slope)?;
        if !(slope[0] > 0.0 && slope[0].is_finite()) {
            return Err(format!(
                "`{name}` is {}: a PReLU slope must be finite and positive here",
                slope[0]
            ));
        }
        net.params[start + l] = slope[0];
    }
    let mut values = Vec::new();
    for (l, prefix) in prefixes.iter().enumerate() {
        let inputs = sizes[l];
        // The weight is (out, in) in the file, whatever the storage order.
        file.read_f32(&format!("{prefix}weight"), &mut values)?;
        let mut w = net.weight_mut(l);
        for (at, &v) in values.iter().enumerate() {
            w.set(at / inputs, at % inputs, v);
        }
        file.read_f32(&format!("{prefix}bias"), &mut values)?;
        let (_, b) = net.layer_ranges(l);
        net.params[b].copy_from_slice(&values);
    }
    Ok(net)
}

/// The `nn.Linear` layers of a PyTorch `state_dict`, in order: the tensor
/// name prefixes (`"0."`, `"2."`, or `"layers.0."` …) and the layer sizes,
/// inferred from the weights' shapes. Every tensor must belong to a layer.
fn linear_layers(shapes: &[(String, Vec<usize>)]) -> Result<(Vec<String>, Vec<usize>), String> {
    // `{prefix}{index}.weight` with a 2-D shape is a Linear layer.
    let mut layers: Vec<(String, usize, usize, usize)> = Vec::new();
    for (name, shape) in shapes
        .iter()
        .filter(|(name, shape)| !is_prelu_weight(name, shape))
    {
        let Some(stem) = name.strip_suffix(".weight") else {
            continue;
        };
        let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (module, index) = stem.split_at(stem.len() - digits);
        let (Ok(index), &[out, inputs]) = (index.parse::<usize>(), &shape[..]) else {
            continue;
        };
        layers.push((module.to_string(), index, out, inputs));
    }
    layers.sort_by_key(|&(_, index, ..)| index);
    let Some(first) = layers.first() else {
        return Err(
            "no `nn.Linear` weights (2-D tensors named like `0.weight` or `layers.0.weight`)"
                .into(),
        );
    };
    if let Some(other) = layers.iter().find(|l| l.0 != first.0) {
        return Err(format!(
            "Linear weights under two module names, `{}` and `{}`: one `nn.Sequential` expected",
            first.0, other.0
        ));
    }
    let prefixes: Vec<String> = layers.iter().map(|(m, i, ..)| format!("{m}{i}.")).collect();
    let mut sizes = vec![first.3];
    for (l, &(_, _, out, inputs)) in layers.iter().enumerate() {
        if inputs != sizes[l] {
            return Err(format!(
                "layer `{}weight` takes {inputs} inputs but the layer before it has {} outputs",
                prefixes[l], sizes[l]
            ));
        }
        sizes.push(out);
    }
    if let Some((name, shape)) = shapes.iter().find(|(name, shape)| {
        !is_prelu_weight(name, shape)
            && !prefixes
                .iter()
                .any(|p| *name == format!("{p}weight") || *name == format!("{p}bias"))
    }) {
        return Err(format!(
            "tensor `{name}` {shape:?} is not a Linear layer's weight or bias, nor a PReLU slope (only Linear layers, PReLU and parameter-free activations load)"
        ));
    }
    Ok((prefixes, sizes))
}

/// Whether a tensor is an `nn.PReLU` module's weight: a 1-D `….weight`.
fn is_prelu_weight(name: &str, shape: &[usize]) -> bool {
    name.ends_with(".weight") && shape.len() == 1
}

/// The PReLU slopes of a PyTorch `state_dict`, one per hidden layer in
/// order, or none; `hidden` must be PReLU if there are any.
fn prelu_slopes(
    shapes: &[(String, Vec<usize>)],
    hidden_layers: usize,
    hidden: Activation,
) -> Result<Vec<String>, String> {
    let mut slopes: Vec<(usize, &str, &[usize])> = shapes
        .iter()
        .filter(|(name, shape)| is_prelu_weight(name, shape))
        .map(|(name, shape)| {
            let stem = name.trim_end_matches(".weight");
            let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            let index = stem[stem.len() - digits..].parse().unwrap_or(usize::MAX);
            (index, name.as_str(), &shape[..])
        })
        .collect();
    slopes.sort_by_key(|&(index, ..)| index);
    if let Some(&(_, name, shape)) = slopes.iter().find(|(.., shape)| shape != &[1]) {
        return Err(format!(
            "`{name}` {shape:?} is a per-channel PReLU; only one slope per layer (num_parameters=1) loads"
        ));
    }
    match (slopes.first(), hidden) {
        (None, _) => Ok(vec![]),
        (Some(_), Activation::PRelu(_)) if slopes.len() == hidden_layers => Ok(slopes
            .iter()
            .map(|&(_, name, _)| name.to_string())
            .collect()),
        (Some(&(_, name, _)), Activation::PRelu(_)) => Err(format!(
            "{} PReLU slopes (`{name}` …) for {hidden_layers} hidden layers",
            slopes.len()
        )),
        (Some(&(_, name, _)), _) => Err(format!(
            "tensor `{name}` [1] is a PReLU slope: load with Activation::PRelu as the hidden activation"
        )),
    }
}

/// Reads the Linear layers of a PyTorch `state_dict` (see
/// [`Mlp::load_pytorch`]) from a safetensors stream of `len` bytes.
fn read_pytorch(file: impl Read + Seek, len: u64, hidden: Activation) -> Result<Mlp, String> {
    let mut file = TensorFile::open(file, len, "model")?;
    let shapes = file.shapes();
    let (prefixes, sizes) = linear_layers(&shapes)?;
    let slopes = prelu_slopes(&shapes, sizes.len() - 2, hidden)?;
    let why = format!("the architecture {sizes:?} (from the weights' shapes)");
    read_layers(&mut file, &prefixes, &slopes, &sizes, hidden, &why).map_err(|e| match e {
        e if e.starts_with("missing tensor") => {
            format!("{e} (a Linear layer without a bias does not load)")
        }
        e => e,
    })
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
    let hidden = name
        .parse::<Activation>()
        .ok()
        .ok_or_else(|| format!("unknown hidden activation `{name}`"))?;
    if sizes.len() < 2 || sizes.contains(&0) {
        return Err(format!("invalid layer sizes {sizes:?}"));
    }
    Ok((sizes, hidden))
}
