//! A training run's state at a step, to resume it bit for bit, and its
//! file: safetensors, written atomically, read without trusting it.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::{EpochMetrics, Metric, Score, TrainConfig};
use crate::mlp::tensor_file::TensorFile;
use crate::mlp::{Mlp, architecture};
use crate::optim::{Optimizer, OptimizerState};
use crate::par::Par;

/// Metadata key value marking a checkpoint file.
const FORMAT: &str = "densekit-checkpoint-2";

/// Where a run stood after a step: the network and the optimizer's state
/// (in the data's own input order), the epoch's partial sums, the finished
/// epochs' metrics, and the settings it was made with. [`train_with`]
/// resumes from one; [`save`](Self::save) and [`load`](Self::load) keep it
/// in a file.
///
/// [`train_with`]: super::train_with
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::mlp::Mlp;
/// use densekit::optim::{Adam, Optimizer};
/// use densekit::train::{TrainConfig, TrainData};
/// let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
/// let xor = Dataset::classification(&x[..], 2, &[0u32, 1, 1, 0][..]).unwrap();
/// let mut net = Mlp::new(&[2, 8, 2], Activation::Tanh, 1);
/// let opt = Optimizer::Adam(Adam { lr: 0.05, ..Adam::default() });
/// let config = TrainConfig { epochs: 100, batch_size: 4, ..TrainConfig::default() };
/// use densekit::train::{train_with, Flow, Progress, TrainError};
/// // Stop after epoch 40 of 100, then resume from the checkpoint: the same
/// // weights as an uninterrupted run.
/// let mut straight = net.clone();
/// train_with(&mut straight, &opt, TrainData::new(&xor), &config, None, |_| Flow::Continue).unwrap();
/// let stop = |p: Progress<'_>| match p {
///     Progress::Epoch(m) if m.epoch == 40 => Flow::Stop,
///     _ => Flow::Continue,
/// };
/// let Err(TrainError::Interrupted(checkpoint)) =
///     train_with(&mut net, &opt, TrainData::new(&xor), &config, None, stop)
/// else { panic!("the run was not stopped") };
/// assert_eq!(checkpoint.epochs_done, 40);
/// train_with(&mut net, &opt, TrainData::new(&xor), &config, Some(&checkpoint), |_| Flow::Continue).unwrap();
/// assert_eq!(net, straight);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The network after the step.
    pub net: Mlp,
    /// The optimizer's state after the step.
    pub optimizer: OptimizerState,
    /// Epochs finished.
    pub epochs_done: usize,
    /// Steps finished of the epoch after them.
    pub steps_done: usize,
    /// The epoch's loss so far, summed over its samples.
    pub loss_sum: f64,
    /// The epoch's correct predictions so far.
    pub correct: usize,
    /// The learning rate of the last step.
    pub lr: f32,
    /// The running loss estimate Q (none before the first step).
    pub running_loss: Option<f64>,
    /// The metrics of the finished epochs.
    pub history: Vec<EpochMetrics>,
    /// The optimizer and training settings of the run, as text: a resume
    /// with other settings would not continue the same run.
    pub settings: String,
}

/// The settings a resumed run must share with its checkpoint (all of the
/// optimizer and the training configuration but the threads, which do not
/// change the results).
pub(super) fn settings(optimizer: &Optimizer, config: &TrainConfig) -> String {
    let config = TrainConfig {
        par: Par::Seq,
        ..config.clone()
    };
    format!("{optimizer:?}; {config:?}")
}

impl Checkpoint {
    /// Whether this checkpoint continues a run of `net`'s architecture with
    /// these settings.
    pub(super) fn fits(
        &self,
        net: &Mlp,
        optimizer: &Optimizer,
        config: &TrainConfig,
    ) -> Result<(), String> {
        if self.net.sizes() != net.sizes()
            || self.net.hidden_activation() != net.hidden_activation()
        {
            return Err(format!(
                "the checkpoint is of a {:?} network ({}), not {:?} ({})",
                self.net.sizes(),
                self.net.hidden_activation(),
                net.sizes(),
                net.hidden_activation()
            ));
        }
        let now = settings(optimizer, config);
        if self.settings != now {
            return Err(format!(
                "the checkpoint was made with other settings: {} (now {now})",
                self.settings
            ));
        }
        if self.history.len() != self.epochs_done || self.epochs_done > config.epochs {
            return Err(format!(
                "the checkpoint is after epoch {} of {}, with {} epochs of metrics",
                self.epochs_done,
                config.epochs,
                self.history.len()
            ));
        }
        Ok(())
    }

    /// Writes the checkpoint to `path`, atomically (see
    /// [`write_atomically`](crate::atomic_file::write_atomically)).
    ///
    /// # Errors
    /// A message naming the file if it cannot be written.
    ///
    /// # Examples
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::data::Dataset;
    /// use densekit::mlp::Mlp;
    /// use densekit::optim::{Adam, Optimizer};
    /// use densekit::train::{TrainConfig, TrainData};
    /// let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    /// let xor = Dataset::classification(&x[..], 2, &[0u32, 1, 1, 0][..]).unwrap();
    /// let mut net = Mlp::new(&[2, 8, 2], Activation::Tanh, 1);
    /// let opt = Optimizer::Adam(Adam { lr: 0.05, ..Adam::default() });
    /// let config = TrainConfig { epochs: 100, batch_size: 4, ..TrainConfig::default() };
    /// use densekit::train::{train_with, Checkpoint, Flow, Progress};
    /// let path = std::env::temp_dir().join(format!("densekit-doc-ckpt-{}.safetensors", std::process::id()));
    /// let config = TrainConfig { epochs: 2, ..config };
    /// // Ask for a checkpoint after each epoch and keep it on disk.
    /// train_with(&mut net, &opt, TrainData::new(&xor), &config, None, |p| match p {
    ///     Progress::Epoch(_) => Flow::Checkpoint,
    ///     Progress::Checkpoint(c) => { c.save(&path).unwrap(); Flow::Continue }
    ///     _ => Flow::Continue,
    /// }).unwrap();
    /// assert_eq!(Checkpoint::load(&path).unwrap().epochs_done, 2);
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), String> {
        let path = path.as_ref();
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let bytes =
            |values: &[f32]| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let (first, second) = self.optimizer.buffers();
        let data = [
            ("params", bytes(self.net.params())),
            ("optimizer.first", bytes(first)),
            ("optimizer.second", bytes(second)),
        ];
        let views = data
            .iter()
            .map(|(name, b)| {
                TensorView::new(Dtype::F32, vec![b.len() / 4], b)
                    .map(|view| (name.to_string(), view))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(&e))?;
        let sizes = self
            .net
            .sizes()
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        // Floats as their bits, so the file restores them exactly.
        let history: Vec<[u64; METRICS_WORDS]> = self.history.iter().map(metrics_bits).collect();
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("sizes".to_string(), sizes),
            (
                "hidden_activation".to_string(),
                self.net.hidden_activation().to_string(),
            ),
            ("settings".to_string(), self.settings.clone()),
            ("epochs_done".to_string(), self.epochs_done.to_string()),
            ("steps_done".to_string(), self.steps_done.to_string()),
            (
                "optimizer_step".to_string(),
                self.optimizer.step.to_string(),
            ),
            ("loss_sum".to_string(), self.loss_sum.to_bits().to_string()),
            ("correct".to_string(), self.correct.to_string()),
            ("lr".to_string(), self.lr.to_bits().to_string()),
            (
                "running_loss".to_string(),
                self.running_loss
                    .map_or("none".to_string(), |q| q.to_bits().to_string()),
            ),
            (
                "history".to_string(),
                serde_json::to_string(&history).map_err(|e| err(&e))?,
            ),
        ]);
        let serialized = safetensors::serialize(views, Some(metadata)).map_err(|e| err(&e))?;
        crate::atomic_file::write_atomically(path, &serialized, true)
            .map_err(|e| err(&format!("could not save the checkpoint: {e}")))
    }

    /// Reads a checkpoint written by [`save`](Self::save), checking every
    /// length against the file before reading that much (as
    /// [`Mlp::load`] does).
    ///
    /// # Errors
    /// A message naming the file: unreadable, not a checkpoint, or
    /// inconsistent.
    ///
    /// # Examples
    /// ```
    /// use densekit::train::Checkpoint;
    /// let err = Checkpoint::load("/no/such/checkpoint.safetensors").unwrap_err();
    /// assert!(err.starts_with("/no/such/checkpoint.safetensors"));
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint, String> {
        let path = path.as_ref();
        let err = |e: String| format!("{}: {e}", path.display());
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let info = file.metadata().map_err(|e| err(e.to_string()))?;
        if !info.is_file() {
            return Err(err("not a regular file".into()));
        }
        read(std::io::BufReader::new(file), info.len()).map_err(err)
    }
}

/// Numbers per epoch in a checkpoint's history: epoch, running loss, lr,
/// the two timings, then three per score (train, val, test).
const METRICS_WORDS: usize = 5 + 3 * 3;

/// An epoch's metrics as bits (floats exactly).
fn metrics_bits(m: &EpochMetrics) -> [u64; METRICS_WORDS] {
    let mut bits = [0; METRICS_WORDS];
    bits[..5].copy_from_slice(&[
        m.epoch as u64,
        m.running_loss.to_bits(),
        u64::from(m.lr.to_bits()),
        m.train_seconds.to_bits(),
        m.eval_seconds.to_bits(),
    ]);
    for (slot, score) in bits[5..]
        .chunks_exact_mut(3)
        .zip([Some(m.train), m.val, m.test])
    {
        slot.copy_from_slice(&score_bits(score));
    }
    bits
}

/// A score as `[kind, loss, metric]`: kind 0 for none, 1 for accuracy, 2
/// for RMSE.
fn score_bits(score: Option<Score>) -> [u64; 3] {
    match score {
        None => [0; 3],
        Some(Score { loss, metric }) => match metric {
            Metric::Accuracy(a) => [1, loss.to_bits(), a.to_bits()],
            Metric::Rmse(r) => [2, loss.to_bits(), r.to_bits()],
        },
    }
}

/// [`score_bits`] read back.
fn score_from_bits([kind, loss, value]: [u64; 3]) -> Result<Option<Score>, String> {
    let (loss, value) = (f64::from_bits(loss), f64::from_bits(value));
    match kind {
        0 => Ok(None),
        1 => Ok(Some(Score {
            loss,
            metric: Metric::Accuracy(value),
        })),
        2 => Ok(Some(Score {
            loss,
            metric: Metric::Rmse(value),
        })),
        _ => Err(format!("bad score kind {kind} in `history`")),
    }
}

/// [`metrics_bits`] read back.
fn metrics_from_bits(b: [u64; METRICS_WORDS]) -> Result<EpochMetrics, String> {
    let score = |i: usize| score_from_bits([b[5 + 3 * i], b[6 + 3 * i], b[7 + 3 * i]]);
    Ok(EpochMetrics {
        epoch: usize::try_from(b[0]).map_err(|e| e.to_string())?,
        running_loss: f64::from_bits(b[1]),
        lr: f32::from_bits(u32::try_from(b[2]).map_err(|e| e.to_string())?),
        train_seconds: f64::from_bits(b[3]),
        eval_seconds: f64::from_bits(b[4]),
        train: score(0)?.ok_or("an epoch without a training score in `history`")?,
        val: score(1)?,
        test: score(2)?,
    })
}

fn read(file: impl std::io::Read + std::io::Seek, len: u64) -> Result<Checkpoint, String> {
    let mut file = TensorFile::open(file, len, "checkpoint")?;
    file.check_format(FORMAT)?;
    let (sizes, hidden) = architecture(&file)?;
    let count = crate::mlp::total_param_count(&sizes, hidden).ok_or("layer sizes overflow")?;
    let why = format!("the architecture {sizes:?}");
    for name in ["params", "optimizer.first", "optimizer.second"] {
        file.check_f32(name, &[count], &why)?;
    }
    let number = |key: &str| -> Result<u64, String> {
        let text = file.metadata(key)?;
        text.parse()
            .map_err(|_| format!("bad `{key}` metadata `{text}`"))
    };
    let as_usize = |v: u64| usize::try_from(v).map_err(|e| e.to_string());
    let epochs_done = as_usize(number("epochs_done")?)?;
    let steps_done = as_usize(number("steps_done")?)?;
    let optimizer_step = number("optimizer_step")?;
    let loss_sum = f64::from_bits(number("loss_sum")?);
    let correct = as_usize(number("correct")?)?;
    let lr = f32::from_bits(u32::try_from(number("lr")?).map_err(|e| e.to_string())?);
    let running_loss = match file.metadata("running_loss")? {
        "none" => None,
        _ => Some(f64::from_bits(number("running_loss")?)),
    };
    let history: Vec<[u64; METRICS_WORDS]> = serde_json::from_str(file.metadata("history")?)
        .map_err(|e| format!("bad `history` metadata ({e})"))?;
    let history = history
        .into_iter()
        .map(metrics_from_bits)
        .collect::<Result<Vec<_>, _>>()?;
    let settings = file.metadata("settings")?.to_string();
    let (mut params, mut first, mut second) = (Vec::new(), Vec::new(), Vec::new());
    file.read_f32("params", &mut params)?;
    file.read_f32("optimizer.first", &mut first)?;
    file.read_f32("optimizer.second", &mut second)?;
    Ok(Checkpoint {
        net: Mlp::from_parts(&sizes, hidden, params)?,
        optimizer: OptimizerState::from_parts(optimizer_step, first, second)?,
        epochs_done,
        steps_done,
        loss_sum,
        correct,
        lr,
        running_loss,
        history,
        settings,
    })
}
