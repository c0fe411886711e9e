//! Trains and times a multilayer perceptron on MNIST.
//!
//! ```text
//! cargo run --release --bin train_mnist                     # defaults: ≥ 98 % test accuracy, fast
//! cargo run --release --bin train_mnist -- --preset lecture # the lecture's Keras model
//! cargo run --release --bin train_mnist -- --help
//! ```

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::{Parser, ValueEnum};
use densekit::activation::Activation;
use densekit::atomic_file::{check_writable, write_atomically};
use densekit::data::{Augment, CLASSES, Dataset, load_mnist};
use densekit::gemm::{MatRef, Par};
use densekit::mlp::{Init, Mlp, MlpWorkspace, NORMALIZATION, PackedMlp};
use densekit::optim::{Adam, Optimizer, RmsProp, Schedule, Sgd, WeightDecay};
use densekit::train::{
    Checkpoint, EpochMetrics, Flow, Progress, Score, TrainConfig, TrainData, TrainError, evaluate,
    train_with,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OptimizerArg {
    /// Plain SGD.
    Sgd,
    /// SGD with momentum (--momentum).
    Momentum,
    /// SGD with Nesterov momentum (--momentum).
    Nesterov,
    /// Adam.
    Adam,
    /// Adam with decoupled weight decay (PyTorch's AdamW; --weight-decay defaults to 0.01).
    Adamw,
    /// RMSprop.
    Rmsprop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScheduleArg {
    /// The base learning rate throughout.
    Constant,
    /// Cosine decay from the base rate to 0 over the run.
    Cosine,
    /// Multiply by 0.1 every third of the run.
    Step,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// The lecture's Keras model: 784→10 softmax, SGD lr 0.01, batch 32, 20 epochs.
    Lecture,
    /// The most accurate MLP this trainer trains on two cores in a few minutes (see --help of each flag it sets)
    Best,
}

/// Train a multilayer perceptron on MNIST with densekit's fused kernels and
/// report accuracy and time.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Folder with the four MNIST IDX files (raw or .gz) [default: $MNIST_DIR, else the repo's data/mnist]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Hidden layer widths, comma-separated, or `none` for a single softmax layer [default: 256]
    #[arg(long, value_parser = hidden_widths)]
    hidden: Option<Widths>,
    /// Activation of the hidden layers: relu, leaky-relu or leaky-relu:SLOPE (default slope 0.01), prelu or prelu:SLOPE
    /// (a learned slope per hidden layer, starting at 0.25 by default), sigmoid or tanh
    #[arg(long, default_value = "relu")]
    activation: Activation,
    /// Weight initialization: by-activation (He-uniform for the ReLU family, else Glorot-uniform),
    /// glorot-uniform, glorot-normal, he-uniform, he-normal, lecun-normal, pytorch, zeros
    #[arg(long, default_value = "by-activation", value_parser = init_scheme)]
    init: Init,
    /// Dropout rate of the hidden layers' outputs while training: one for all, or one per hidden layer (0.2 or 0.2,0.3)
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    dropout: Vec<f32>,
    /// Max-norm of each hidden unit's incoming weights, enforced after every step
    #[arg(long, allow_negative_numbers = true)]
    max_norm: Option<f32>,
    /// Distort the training images: none, shift:N (±N pixels), affine (±10°, ±10% size, ±0.1 shear, ±2 pixels) or affine:DEGREES,SCALE,SHEAR,SHIFT
    #[arg(long, default_value = "none")]
    augment: Augment,
    /// Hold out the last N training images for validation (reported each epoch; --save then keeps the best-validation weights)
    #[arg(long, default_value_t = 0)]
    val: usize,
    /// Optimizer
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptimizerArg,
    /// Learning rate [default: 0.003 for adam and adamw, 0.01 for sgd, 0.05 for momentum and nesterov, 0.001 for rmsprop]
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    lr: Option<f32>,
    /// Momentum factor for `--optimizer momentum` and `nesterov` (and rmsprop), in [0, 1)
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true, value_parser = fraction)]
    momentum: f32,
    /// L2 weight decay, added to the gradient (decoupled, AdamW-style, with --decoupled) [default: 0; 0.01 for adamw]
    #[arg(long, allow_negative_numbers = true, value_parser = non_negative)]
    weight_decay: Option<f32>,
    /// Apply the weight decay decoupled from the gradient (AdamW)
    #[arg(long)]
    decoupled: bool,
    /// Learning-rate schedule over the run (the library's TrainConfig::default() uses constant)
    #[arg(long, value_enum, default_value = "cosine")]
    schedule: ScheduleArg,
    /// Samples per step
    #[arg(long, default_value_t = 128, value_parser = at_least_one())]
    batch_size: usize,
    /// Epochs (runs exactly this many; TrainConfig::default() has 10)
    #[arg(long, default_value_t = 5, value_parser = at_least_one())]
    epochs: usize,
    /// Seed for initialization and shuffling (TrainConfig::default() has 0)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threads for the kernels [default: all cores]
    #[arg(long, value_parser = at_least_one())]
    threads: Option<usize>,
    /// Save the trained model here (safetensors)
    #[arg(long)]
    save: Option<PathBuf>,
    /// Start from this model (safetensors) instead of a fresh initialization
    #[arg(long)]
    load: Option<PathBuf>,
    /// Only evaluate the loaded model on the test set
    #[arg(long, requires = "load")]
    eval_only: bool,
    /// Write one JSON object per epoch to this file
    #[arg(long)]
    metrics_out: Option<PathBuf>,
    /// Draw loss and accuracy per epoch into this SVG file
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Use a preset model and schedule (overrides the model and optimizer flags)
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Seconds between progress lines within an epoch [default: 0.1 on a terminal (a bar redrawn in place), 5 otherwise (one line each)]
    #[arg(long, value_parser = seconds)]
    log_interval: Option<f64>,
    /// Write a checkpoint of the run here (safetensors) every --checkpoint-every
    /// epochs and on Ctrl-C, to continue it later with --resume
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Epochs between checkpoints
    #[arg(long, default_value_t = 1, requires = "checkpoint", value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: u64,
    /// Continue the run a checkpoint was taken of (give the same model and
    /// training flags); the result is bitwise that of the uninterrupted run
    #[arg(long, conflicts_with_all = ["load", "eval_only"])]
    resume: Option<PathBuf>,
}

/// An initialization scheme by name, for clap.
fn init_scheme(text: &str) -> Result<Init, String> {
    Init::from_name(text)
        .ok_or_else(|| format!("`{text}` is not one of {}", Init::NAMES.join(", ")))
}

/// Layer widths for `--hidden`: `256`, `512,256`, or `none`.
#[derive(Clone, Debug)]
struct Widths(Vec<usize>);

fn hidden_widths(text: &str) -> Result<Widths, String> {
    if text.trim() == "none" {
        return Ok(Widths(Vec::new()));
    }
    text.split(',')
        .map(|w| {
            w.trim()
                .parse()
                .ok()
                .filter(|&w: &usize| w > 0)
                .ok_or_else(|| {
                    format!("`{w}` is not a positive width (use e.g. 256 or 512,256 or none)")
                })
        })
        .collect::<Result<_, _>>()
        .map(Widths)
}

impl std::fmt::Display for Widths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.is_empty() {
            true => f.write_str("none"),
            false => {
                let widths: Vec<String> = self.0.iter().map(usize::to_string).collect();
                f.write_str(&widths.join(","))
            }
        }
    }
}

/// A count of at least 1, for clap.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// A finite number > 0, for clap.
fn positive(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

/// A finite number ≥ 0, for clap.
fn non_negative(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{text}` is not a number ≥ 0")),
    }
}

/// A number in [0, 1), for clap.
fn fraction(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if (0.0..1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{text}` is not a number in [0, 1)")),
    }
}

/// A number of seconds for clap: finite and not negative.
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("`{text}` is not a number of seconds ≥ 0")),
    }
}

/// A user-facing error: one line, no backtrace.
struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

/// Set by Ctrl-C (SIGINT): the run stops after its current step.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED_EXIT: u8 = 130;

fn main() -> ExitCode {
    let args = Args::parse();
    // The first Ctrl-C finishes the step and saves; a second one quits at once.
    let handler = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(INTERRUPTED_EXIT.into());
        }
        eprintln!(
            "\ntrain_mnist: interrupted: finishing the current step (Ctrl-C again quits at once)"
        );
    });
    if let Err(e) = handler {
        eprintln!("train_mnist: warning: Ctrl-C will not save anything ({e})");
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg)) => {
            eprintln!("train_mnist: error: {msg}");
            match INTERRUPTED.load(Ordering::SeqCst) {
                true => ExitCode::from(INTERRUPTED_EXIT),
                false => ExitCode::from(1),
            }
        }
    }
}

/// The settings after applying a preset.
struct Plan {
    /// Layer sizes after the input layer (hidden widths, then the classes).
    sizes: Vec<usize>,
    activation: Activation,
    init: Init,
    /// Training images held out for validation.
    val: usize,
    optimizer: Optimizer,
    config: TrainConfig,
}

fn plan(args: &Args) -> Result<Plan, Fail> {
    let threads = args.threads.map_or(Par::Auto, Par::Threads);
    if let Some(Preset::Best) = args.preset {
        return Ok(best_preset(args, threads));
    }
    if let Some(Preset::Lecture) = args.preset {
        return Ok(Plan {
            sizes: vec![CLASSES],
            activation: Activation::Relu,
            init: Init::ByActivation,
            val: args.val,
            optimizer: Optimizer::Sgd(Sgd {
                lr: 0.01,
                ..Sgd::default()
            }),
            config: TrainConfig {
                epochs: 20,
                batch_size: 32,
                seed: args.seed,
                schedule: Schedule::Constant,
                par: threads,
                ..TrainConfig::default()
            },
        });
    }
    let decay = match args.optimizer {
        OptimizerArg::Adamw => args.weight_decay.unwrap_or(0.01),
        _ => args.weight_decay.unwrap_or(0.0),
    };
    let mut sizes = args.hidden.clone().map_or(vec![256], |w| w.0);
    sizes.push(CLASSES);
    let activation = args.activation;
    let weight_decay = if args.decoupled || args.optimizer == OptimizerArg::Adamw {
        WeightDecay::Decoupled(decay)
    } else {
        WeightDecay::Coupled(decay)
    };
    let optimizer = match args.optimizer {
        OptimizerArg::Sgd => Optimizer::Sgd(Sgd {
            lr: args.lr.unwrap_or(0.01),
            weight_decay,
            ..Sgd::default()
        }),
        OptimizerArg::Momentum | OptimizerArg::Nesterov => Optimizer::Sgd(Sgd {
            lr: args.lr.unwrap_or(0.05),
            momentum: args.momentum,
            nesterov: args.optimizer == OptimizerArg::Nesterov,
            weight_decay,
        }),
        OptimizerArg::Adam | OptimizerArg::Adamw => Optimizer::Adam(Adam {
            lr: args.lr.unwrap_or(0.003),
            weight_decay,
            ..Adam::default()
        }),
        OptimizerArg::Rmsprop => Optimizer::RmsProp(RmsProp {
            lr: args.lr.unwrap_or(0.001),
            weight_decay,
            ..RmsProp::default()
        }),
    };
    let schedule = match args.schedule {
        ScheduleArg::Constant => Schedule::Constant,
        ScheduleArg::Cosine => Schedule::Cosine {
            epochs: args.epochs,
            min_lr: 0.0,
        },
        ScheduleArg::Step => Schedule::Step {
            every: args.epochs.div_ceil(3).max(1),
            gamma: 0.1,
        },
    };
    Ok(Plan {
        sizes,
        activation,
        init: args.init,
        val: args.val,
        optimizer,
        config: TrainConfig {
            epochs: args.epochs,
            batch_size: args.batch_size,
            seed: args.seed,
            schedule,
            par: threads,
            dropout: args.dropout.clone(),
            max_norm: args.max_norm,
            augment: args.augment,
            ..TrainConfig::default()
        },
    })
}

/// `--preset best`: two wide ReLU layers with dropout, trained on shifted
/// images with Adam and a cosine schedule; its settings were chosen on a
/// validation split (`--val 10000`), never on the test set.
fn best_preset(args: &Args, threads: Par) -> Plan {
    let epochs = 30;
    Plan {
        sizes: vec![1024, 1024, CLASSES],
        activation: Activation::Relu,
        init: Init::ByActivation,
        val: args.val,
        optimizer: Optimizer::Adam(Adam {
            lr: 0.001,
            ..Adam::default()
        }),
        config: TrainConfig {
            epochs,
            batch_size: 128,
            seed: args.seed,
            schedule: Schedule::Cosine {
                epochs,
                min_lr: 0.0,
            },
            par: threads,
            dropout: vec![0.3],
            max_norm: None,
            augment: Augment::Shift(2),
            ..TrainConfig::default()
        },
    }
}

fn data_dir(args: &Args) -> PathBuf {
    args.data_dir
        .clone()
        .or_else(|| std::env::var_os("MNIST_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist")))
}

fn run(args: Args) -> Result<(), Fail> {
    let total_started = Instant::now();
    // Check every flag before spending time on the data.
    let Plan {
        sizes,
        activation,
        init,
        val,
        optimizer,
        config,
    } = plan(&args)?;
    // The threads first: a pool the OS refuses is an error, not a panic later.
    config.par.ready().map_err(|e| {
        Fail(format!(
            "--threads: {e} (the system allows this process no more threads)"
        ))
    })?;
    // Every output path is checked before any long work, so a typo costs
    // nothing; the model to start from is read (and checked) before the data.
    for (flag, path) in [
        ("--save", &args.save),
        ("--plot", &args.plot),
        ("--metrics-out", &args.metrics_out),
        ("--checkpoint", &args.checkpoint),
    ] {
        if let Some(path) = path {
            check_writable(path).map_err(|e| {
                Fail(format!(
                    "{flag} {}: cannot write there: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let loaded = args.load.as_deref().map(Mlp::load).transpose()?;
    let resume = args
        .resume
        .as_deref()
        .map(Checkpoint::load)
        .transpose()
        .map_err(Fail)?;
    let dir = data_dir(&args);
    let load_started = Instant::now();
    let mnist = load_mnist(&dir)?;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let inputs = mnist.train.feature_count();
    println!(
        "data: {} training and {} test images of {inputs} pixels from {} ({load_seconds:.2} s)",
        mnist.train.len(),
        mnist.test.len(),
        dir.display()
    );
    let sizes: Vec<usize> = std::iter::once(inputs).chain(sizes).collect();
    let planned = match (&loaded, &resume) {
        (Some(net), _) => net.sizes(),
        (_, Some(checkpoint)) => checkpoint.net.sizes(),
        _ => &sizes[..],
    };
    check_memory(planned, config.batch_size.min(mnist.train.len()))?;
    let mut net = match (loaded, &args.load) {
        (Some(net), Some(path)) => {
            if net.sizes()[0] != inputs || *net.sizes().last().expect("sizes") != CLASSES {
                return Err(Fail(format!(
                    "{}: the model takes {} inputs and has {} classes; the data has {inputs} and {CLASSES}",
                    path.display(),
                    net.sizes()[0],
                    net.sizes().last().expect("sizes")
                )));
            }
            // A model's shape comes from its file: a different --hidden is a
            // mistake to report, not a wish to drop silently.
            if args.hidden.is_some() && net.sizes() != &sizes[..] {
                return Err(Fail(format!(
                    "--hidden {} asks for {} but {} holds a {} model; leave out --hidden with --load",
                    args.hidden
                        .as_ref()
                        .map(Widths::to_string)
                        .unwrap_or_default(),
                    arch_name(&sizes),
                    path.display(),
                    arch_name(net.sizes())
                )));
            }
            net
        }
        _ => Mlp::with_init(&sizes, activation, init, config.seed),
    };
    let arch = arch_name(net.sizes());
    let threads = config.par.threads();
    if let Some(asked) = args.threads
        && asked > threads
    {
        println!(
            "note: --threads {asked} is more than the {threads} cores this process can use; running on {threads} \
             (more threads would only take turns on them; results do not depend on the count)"
        );
    }
    let kernel = densekit::gemm::Isa::selected();
    if args.eval_only {
        let eval_started = Instant::now();
        // Inference on the frozen form: the same bits, no weight copied per call.
        let packed = net.packed();
        let mut confusion = vec![0usize; CLASSES * CLASSES];
        let mut ws = MlpWorkspace::new();
        let score = evaluate(
            &packed,
            &mnist.test,
            config.par,
            &mut ws,
            Some(&mut confusion),
        );
        let eval_seconds = eval_started.elapsed().as_secs_f64();
        let one_by_one = seconds_per_image(&packed, &mnist.test, config.par, &mut ws);
        println!(
            "model {arch} ({}), kernel {kernel}, {threads} thread(s)",
            net.hidden_activation()
        );
        println!(
            "test loss {:.4}, test accuracy {:.2}%",
            score.loss,
            100.0 * accuracy(score)
        );
        print_confusion(&confusion);
        println!(
            "inference: {:.0} images/s in batches of 2000; one image at a time, {:.2} µs per image",
            mnist.test.len() as f64 / eval_seconds,
            one_by_one * 1e6
        );
        println!(
            "time: data load {load_seconds:.2} s, evaluation {eval_seconds:.2} s, total {:.2} s",
            total_started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let hidden = if net.layers() > 1 {
        format!("hidden activation {}", net.hidden_activation())
    } else {
        "no hidden layer".to_string()
    };
    println!(
        "model {arch}, {hidden}, {} parameters; {}; batch {}, {} epochs, seed {}; kernel {kernel}, {threads} thread(s)",
        net.params().len(),
        optimizer_name(&optimizer),
        config.batch_size,
        config.epochs,
        config.seed
    );
    let run_config = serde_json::json!({
        "densekit": env!("CARGO_PKG_VERSION"),
        "data_dir": dir.display().to_string(),
        "model": arch,
        "hidden_activation": net.hidden_activation().to_string(),
        "parameters": net.params().len(),
        "loaded": args.load.as_ref().map(|p| p.display().to_string()),
        "optimizer": optimizer_name(&optimizer),
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "schedule": format!("{:?}", config.schedule),
        "seed": config.seed,
        "running_lambda": config.running_lambda,
        "init": init.name(),
        "dropout": config.dropout,
        "max_norm": config.max_norm,
        "augment": config.augment.to_string(),
        "val": val,
        "kernel": kernel.to_string(),
    });
    let mut metrics = args
        .metrics_out
        .as_deref()
        .map(|path| MetricsOut::new(path, &run_config));
    if let (Some(checkpoint), Some(path)) = (&resume, &args.resume) {
        println!(
            "resuming after epoch {} and {} steps of the next, from {}",
            checkpoint.epochs_done,
            checkpoint.steps_done,
            path.display()
        );
        if let Some(out) = metrics.as_mut() {
            out.seed(&checkpoint.history);
        }
    }
    let terminal = std::io::stdout().is_terminal();
    // On a terminal, a bar redrawn in place (indicatif); otherwise a line
    // every --log-interval seconds.
    // A bar per epoch, started at its first report.
    let bar_style = terminal.then(|| {
        indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len}  {msg}")
            .expect("a valid template")
            .progress_chars("=> ")
    });
    let mut bar: Option<indicatif::ProgressBar> = None;
    let log_interval = args
        .log_interval
        .unwrap_or(if terminal { 0.1 } else { 5.0 });
    if val >= mnist.train.len() {
        return Err(Fail(format!(
            "--val {val} leaves no training images (there are {})",
            mnist.train.len()
        )));
    }
    let split = mnist.train.len() - val;
    let (train_set, val_set) = (
        mnist.train.rows(0..split),
        mnist.train.rows(split..mnist.train.len()),
    );
    let mut data = TrainData::new(&train_set).with_test(&mnist.test);
    if val > 0 {
        println!("validation: the last {val} training images, held out");
        data = data.with_val(&val_set);
    }
    let samples = train_set.len();
    // With a validation set, the weights of the best validation epoch are
    // kept (through a checkpoint of the run, asked for after that epoch).
    let mut best: Option<(usize, f64, Mlp)> = None;
    let mut want_best = false;
    let mut file_due = false;
    // Training seconds when the test accuracy first reached 98% and 99%.
    let mut reached: [Option<f64>; 2] = [None, None];
    let train_started = Instant::now();
    let mut last_report = Instant::now();
    let mut metrics_error = None;
    let mut checkpoint_error = None;
    let mut diverged = None;
    let mut first_loss = resume
        .as_ref()
        .and_then(|c| c.history.first())
        .map(|m| m.train.loss);
    let every = args.checkpoint_every;
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(Fail(
            "interrupted before training started; nothing saved".into(),
        ));
    }
    let outcome = train_with(
        &mut net,
        &optimizer,
        data,
        &config,
        resume.as_ref(),
        |p| match p {
            Progress::Step {
                epoch,
                step,
                steps,
                running_loss,
            } => {
                let due = last_report.elapsed().as_secs_f64() >= log_interval;
                if due && step < steps {
                    last_report = Instant::now();
                    match &bar_style {
                        Some(style) => {
                            let bar = bar.get_or_insert_with(|| {
                                indicatif::ProgressBar::new(steps as u64)
                                    .with_style(style.clone())
                                    .with_prefix(format!("{epoch:>3}"))
                            });
                            bar.set_message(format!("Q {running_loss:.4}"));
                            bar.set_position(step as u64);
                        }
                        None => {
                            println!("epoch {epoch:>3}: step {step}/{steps}, Q {running_loss:.4}")
                        }
                    }
                }
                match INTERRUPTED.load(Ordering::SeqCst) {
                    true => Flow::Stop,
                    false => Flow::Continue,
                }
            }
            Progress::Checkpoint(checkpoint) => {
                if std::mem::take(&mut want_best)
                    && let Some(m) = checkpoint.history.last()
                {
                    let accuracy = m.val.map_or(f64::NAN, accuracy);
                    best = Some((m.epoch, accuracy, checkpoint.net.clone()));
                }
                if std::mem::take(&mut file_due)
                    && let Some(path) = &args.checkpoint
                    && let Err(e) = checkpoint.save(path)
                {
                    checkpoint_error.get_or_insert(e);
                }
                Flow::Continue
            }
            Progress::Epoch(m) => {
                // Recorded before it is printed: an epoch on the screen is
                // an epoch in the file.
                if let Some(out) = metrics.as_mut()
                    && let Err(e) = out.record(m, train_started.elapsed().as_secs_f64())
                {
                    metrics_error.get_or_insert(e);
                }
                // The epoch's line takes the place of its bar.
                if let Some(bar) = bar.take() {
                    bar.finish_and_clear();
                }
                println!(
                    "epoch {:>3}: train loss {:.4} (Q {:.4}), train acc {:.2}%, test loss {:.4}, test acc {:.2}%, {:.2} s ({:.0} samples/s), lr {:.2e}",
                    m.epoch,
                    m.train.loss,
                    m.running_loss,
                    100.0 * accuracy(m.train),
                    test_score(m).loss,
                    100.0 * accuracy(test_score(m)),
                    m.train_seconds,
                    samples as f64 / m.train_seconds,
                    m.lr
                );
                if let Some(v) = m.val {
                    println!(
                        "           validation loss {:.4}, validation acc {:.2}%",
                        v.loss,
                        100.0 * accuracy(v)
                    );
                }
                for (slot, bar) in reached.iter_mut().zip([0.98, 0.99]) {
                    if slot.is_none() && accuracy(test_score(m)) >= bar {
                        *slot = Some(train_started.elapsed().as_secs_f64());
                    }
                }
                let first = *first_loss.get_or_insert(m.train.loss);
                if diverged.is_none() {
                    diverged = stalled(m, first, CLASSES);
                }
                if diverged.is_some() || INTERRUPTED.load(Ordering::SeqCst) {
                    Flow::Stop
                } else {
                    file_due = args.checkpoint.is_some() && (m.epoch as u64).is_multiple_of(every);
                    want_best = m
                        .val
                        .is_some_and(|v| best.as_ref().is_none_or(|(_, b, _)| accuracy(v) > *b));
                    match file_due || want_best {
                        true => Flow::Checkpoint,
                        false => Flow::Continue,
                    }
                }
            }
        },
    );
    let history = match outcome {
        Ok(history) => history,
        Err(TrainError::Interrupted(checkpoint)) => {
            return Err(Fail(match diverged {
                Some(why) => format!("training diverged: {why}; no model saved"),
                None => interrupted(&args, &net, &checkpoint),
            }));
        }
        Err(e) => return Err(Fail(e.to_string())),
    };
    if let Some((epoch, accuracy, weights)) = best {
        println!(
            "keeping the weights of epoch {epoch}, the best validation accuracy ({:.2}%)",
            100.0 * accuracy
        );
        net = weights;
    }
    for (bar, at) in ["98%", "99%"].iter().zip(reached) {
        if let Some(s) = at {
            println!("test accuracy reached {bar} {s:.1} s after training started");
        }
    }
    let train_seconds: f64 = history.iter().map(|m| m.train_seconds).sum();
    let mut eval_seconds: f64 = history.iter().map(|m| m.eval_seconds).sum();
    let eval_started = Instant::now();
    let mut confusion = vec![0usize; CLASSES * CLASSES];
    let final_score = evaluate(
        &net,
        &mnist.test,
        config.par,
        &mut MlpWorkspace::new(),
        Some(&mut confusion),
    );
    eval_seconds += eval_started.elapsed().as_secs_f64();
    // Every output is attempted, the model first: a failed metrics or plot
    // write never costs the trained model. All failures are reported.
    let mut failures = vec![];
    if let Some(path) = &args.save {
        match save_model(&net, path) {
            Ok(()) => println!("saved the model to {}", path.display()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    if let Some(path) = &args.plot {
        match plot(path, &history) {
            Ok(()) => println!("plotted the curves to {}", path.display()),
            Err(e) => failures.push(format!("--plot {}: {e}", path.display())),
        }
    }
    if let (Some(e), Some(path)) = (metrics_error, &args.metrics_out) {
        failures.push(format!("--metrics-out {}: {e}", path.display()));
    }
    if let Some(e) = checkpoint_error {
        failures.push(format!("--checkpoint: {e}"));
    }
    println!(
        "\ntest accuracy {:.2}% after {} epochs",
        100.0 * accuracy(final_score),
        history.len()
    );
    print_confusion(&confusion);
    // 6 flops per parameter per sample (forward 2, backward 4), the usual convention;
    // the multiplies needed skip the first layer's input gradient. The kernels
    // also skip the all-zero blocks of an image-like input (about half the
    // first layer's multiplies on MNIST); those are still counted here.
    let params = net.params().len() as f64;
    let trained = (samples * history.len()) as f64;
    let convention = 6.0 * params * trained / train_seconds / 1e9;
    let needed_macs =
        (3 * net.macs_per_sample() - net.sizes()[0] * net.sizes()[1]) as f64 * trained;
    println!(
        "time: data load {load_seconds:.2} s, training {train_seconds:.2} s ({:.3} s/epoch), evaluation {eval_seconds:.2} s, total {:.2} s",
        train_seconds / history.len().max(1) as f64,
        total_started.elapsed().as_secs_f64()
    );
    println!(
        "throughput: {convention:.1} GFLOP/s by the 6·params·samples convention, {:.1} GFLOP/s of the multiplies the network needs (no first-layer input gradient; zero input blocks the kernels skip still counted)",
        2.0 * needed_macs / train_seconds / 1e9
    );
    match failures.is_empty() {
        true => Ok(()),
        false => Err(Fail(failures.join("; "))),
    }
}

/// Why a run that is still finite has diverged, if it has: after an epoch
/// its test accuracy is at chance while its training loss is over twice
/// that of a uniform guess (ln C: a network that has not learned yet sits
/// near it, one whose weights blew up far above), or a later epoch's
/// training loss is over a tenth above the first epoch's.
fn stalled(m: &EpochMetrics, first_loss: f64, classes: usize) -> Option<String> {
    let chance = 1.0 / classes as f64;
    let uniform = (classes as f64).ln();
    let test_accuracy = accuracy(test_score(m));
    if test_accuracy < 1.5 * chance && m.train.loss > 2.0 * uniform {
        return Some(format!(
            "after epoch {} the test accuracy is {:.2}% (chance: {:.0}%) and the training loss {:.3} \
             (a uniform guess scores {uniform:.3}); try a lower learning rate",
            m.epoch,
            100.0 * test_accuracy,
            100.0 * chance,
            m.train.loss
        ));
    }
    (m.epoch >= 2 && m.train.loss > 1.1 * first_loss).then(|| {
        format!(
            "the training loss of epoch {} ({:.4}) is above the first epoch's ({first_loss:.4}); \
             try a lower learning rate",
            m.epoch, m.train.loss
        )
    })
}

/// Saves what an interrupted run has (the model with --save, a checkpoint
/// with --checkpoint) and says so, for the error line.
fn interrupted(args: &Args, net: &Mlp, checkpoint: &Checkpoint) -> String {
    let mut said = vec![format!(
        "interrupted after epoch {} and {} steps of the next",
        checkpoint.epochs_done, checkpoint.steps_done
    )];
    if let Some(path) = &args.save {
        said.push(match save_model(net, path) {
            Ok(()) => format!("saved the model to {}", path.display()),
            Err(e) => e.to_string(),
        });
    }
    match &args.checkpoint {
        Some(path) => said.push(match checkpoint.save(path) {
            Ok(()) => format!(
                "saved a checkpoint to {0}; continue with --resume {0} and the same flags",
                path.display()
            ),
            Err(e) => e,
        }),
        None => said.push("no checkpoint (give --checkpoint to resume later)".into()),
    }
    said.join("; ")
}

/// The model file's notes: what its inputs and outputs are.
fn save_model(net: &Mlp, path: &std::path::Path) -> Result<(), densekit::mlp::ModelError> {
    net.save_with_metadata(
        path,
        &[
            ("normalization", NORMALIZATION),
            ("output", "logits (softmax cross-entropy)"),
        ],
    )
}

/// A score's accuracy (train_mnist's sets are all labelled).
fn accuracy(score: Score) -> f64 {
    score.accuracy().expect("MNIST sets have class labels")
}

/// The test score of an epoch (train_mnist always has a test set).
fn test_score(m: &EpochMetrics) -> Score {
    m.test.expect("train_mnist scores the test set")
}

/// One epoch's `--metrics-out` line.
fn metrics_line(m: &EpochMetrics, elapsed: f64) -> serde_json::Value {
    let test = test_score(m);
    serde_json::json!({
        "epoch": m.epoch,
        "train_loss": m.train.loss,
        "running_loss": m.running_loss,
        "train_accuracy": accuracy(m.train),
        "test_loss": test.loss,
        "test_accuracy": accuracy(test),
        "val_loss": m.val.map(|v| v.loss),
        "val_accuracy": m.val.map(accuracy),
        "lr": m.lr,
        "epoch_seconds": m.train_seconds,
        "elapsed_seconds": elapsed,
    })
}

/// Checks, before anything of that size is allocated, that training a
/// network of `sizes` at `batch` fits in this machine's available memory:
/// weights, gradients and two optimizer buffers, plus each layer's outputs
/// and their gradients for a batch and for an evaluation chunk.
fn check_memory(sizes: &[usize], batch: usize) -> Result<(), Fail> {
    let arch = arch_name(sizes);
    let Some(params) = densekit::mlp::param_count(sizes) else {
        return Err(Fail(format!(
            "a {arch} network has more parameters than this machine can address"
        )));
    };
    // In f64: an estimate to compare and report, immune to overflow.
    let activations: f64 = sizes[1..].iter().map(|&s| s as f64).sum();
    let bytes = 4.0 * (4.0 * params as f64 + activations * (2.0 * batch as f64 + 2000.0));
    let available = available_memory();
    match available {
        Some(have) if bytes > have as f64 => Err(Fail(format!(
            "a {arch} network at batch {batch} needs about {:.1} GB (parameters, gradients, \
             optimizer state and activations); this machine has {:.1} GB available",
            bytes / 1e9,
            have as f64 / 1e9
        ))),
        _ => Ok(()),
    }
}

/// Bytes of memory available to this process (Linux's `MemAvailable`), if known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `--metrics-out`: a first JSON line with the run's configuration
/// (`{"config": {...}}`), then one per epoch. The file is replaced
/// atomically after every epoch, so it always holds the epochs finished so
/// far: an interrupted run keeps them, and a run that stops before its
/// first epoch leaves the previous file as it was.
struct MetricsOut<'a> {
    path: &'a std::path::Path,
    /// A stream (a pipe, /dev/stdout) gets each line once, as it comes; a
    /// file is rewritten with all of them.
    stream: bool,
    lines: String,
    /// Bytes of `lines` a stream has been sent.
    sent: usize,
}

impl<'a> MetricsOut<'a> {
    fn new(path: &'a std::path::Path, config: &serde_json::Value) -> Self {
        MetricsOut {
            path,
            stream: std::fs::metadata(path).is_ok_and(|m| !m.is_file()),
            lines: format!("{}\n", serde_json::json!({ "config": config })),
            sent: 0,
        }
    }

    /// The epochs a resumed run finished before, as their lines (elapsed
    /// time counted from their own timings).
    fn seed(&mut self, history: &[EpochMetrics]) {
        let mut elapsed = 0.0;
        for m in history {
            elapsed += m.train_seconds + m.eval_seconds;
            self.lines
                .push_str(&format!("{}\n", metrics_line(m, elapsed)));
        }
    }

    fn record(&mut self, m: &EpochMetrics, elapsed: f64) -> std::io::Result<()> {
        let line = metrics_line(m, elapsed);
        self.lines.push_str(&format!("{line}\n"));
        let from = if self.stream { self.sent } else { 0 };
        write_atomically(self.path, &self.lines.as_bytes()[from..], false)?;
        self.sent = self.lines.len();
        Ok(())
    }
}

/// Loss (left) and accuracy (right) per epoch, train and test, as SVG.
fn plot(
    path: &std::path::Path,
    history: &[EpochMetrics],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    // Drawn in memory, then written atomically: an interrupted or failed
    // plot never leaves half an SVG.
    let mut svg = String::new();
    draw_curves(SVGBackend::with_string(&mut svg, (960, 420)), history)?;
    write_atomically(path, svg.as_bytes(), false)?;
    Ok(())
}

/// The two panels of [`plot`] on `backend`.
fn draw_curves(
    backend: plotters::prelude::SVGBackend<'_>,
    history: &[EpochMetrics],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = backend.into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(480);
    let epochs = history.len().max(1) as f64;
    type Series = (&'static str, fn(&EpochMetrics) -> f64, RGBColor);
    let panels: [(
        &str,
        &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        [Series; 2],
    ); 2] = [
        (
            "loss (cross-entropy)",
            &left,
            [
                ("train", |m| m.train.loss, BLUE),
                ("test", |m| test_score(m).loss, RED),
            ],
        ),
        (
            "accuracy",
            &right,
            [
                ("train", |m| accuracy(m.train), BLUE),
                ("test", |m| accuracy(test_score(m)), RED),
            ],
        ),
    ];
    for (title, area, series) in panels {
        let values = history
            .iter()
            .flat_map(|m| series.iter().map(move |(_, get, _)| get(m)));
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let pad = ((hi - lo) * 0.1).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(1.0..epochs.max(2.0), (lo - pad)..(hi + pad))?;
        chart.configure_mesh().x_desc("epoch").draw()?;
        for (name, get, color) in series {
            chart
                .draw_series(LineSeries::new(
                    history.iter().map(|m| (m.epoch as f64, get(m))),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn print_confusion(confusion: &[usize]) {
    println!("confusion matrix (rows: true digit, columns: predicted):");
    print!("     ");
    for c in 0..CLASSES {
        print!("{c:>6}");
    }
    println!();
    for (t, row) in confusion.chunks(CLASSES).enumerate() {
        print!("{t:>4} ");
        for &n in row {
            print!("{n:>6}");
        }
        println!();
    }
}

/// Layer sizes as `784-256-10`.
fn arch_name(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

fn optimizer_name(opt: &Optimizer) -> String {
    match opt {
        Optimizer::Sgd(o) if o.nesterov => {
            format!("SGD lr {} Nesterov momentum {}", o.lr, o.momentum)
        }
        Optimizer::Sgd(o) if o.momentum > 0.0 => format!("SGD lr {} momentum {}", o.lr, o.momentum),
        Optimizer::Sgd(o) => format!("SGD lr {}", o.lr),
        Optimizer::Adam(o) => match o.weight_decay {
            WeightDecay::Decoupled(d) => format!("AdamW lr {} weight decay {d}", o.lr),
            _ => format!("Adam lr {}", o.lr),
        },
        Optimizer::RmsProp(o) => format!("RMSprop lr {}", o.lr),
    }
}

/// Mean seconds per image of the forward pass run on the test images one
/// at a time (batch 1, the latency a request handler sees), the inputs
/// gathered beforehand so only the network is timed.
fn seconds_per_image(net: &PackedMlp, data: &Dataset, par: Par, ws: &mut MlpWorkspace) -> f64 {
    let features = data.feature_count();
    let mut x = Vec::with_capacity(data.len() * features);
    data.gather_range(0..data.len(), &mut x);
    let started = Instant::now();
    par.install(|| {
        for row in x.chunks_exact(features) {
            std::hint::black_box(net.forward(MatRef::from_row_major(row, 1, features), ws, par));
        }
    });
    started.elapsed().as_secs_f64() / data.len().max(1) as f64
}
