//! `train_mnist`'s handling of user mistakes: a one-line message, a non-zero
//! exit code, never a panic.
#![cfg(feature = "cli")]

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_train_mnist"))
        .args(args)
        .env_remove("MNIST_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

fn assert_fails(args: &[&str], needle: &str) {
    let (code, stderr) = run(args);
    assert_ne!(code, 0, "{args:?} succeeded");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected `{needle}` in: {stderr}"
    );
}

#[test]
fn bad_flag_values_are_rejected() {
    assert_fails(
        &["--batch-size", "0"],
        "invalid value '0' for '--batch-size",
    );
    assert_fails(&["--lr", "-0.1"], "`-0.1` is not a positive number");
    assert_fails(&["--lr", "nan"], "`nan` is not a positive number");
    assert_fails(&["--momentum", "1"], "`1` is not a number in [0, 1)");
    assert_fails(&["--weight-decay", "-1"], "`-1` is not a number ≥ 0");
    assert_fails(&["--activation", "swish"], "`swish` is not an activation");
    assert_fails(&["--activation", "prelu:-1"], "PRelu slope must be");
    assert_fails(&["--activation", "relu:0.1"], "`relu` takes no slope");
    assert_fails(&["--hidden", "256,abc"], "`abc` is not a positive width");
    assert_fails(&["--threads", "0"], "invalid value '0' for '--threads");
    assert_fails(&["--epochs", "0"], "invalid value '0' for '--epochs");
}

#[test]
fn missing_data_dir_says_where_it_looked() {
    let (code, stderr) = run(&["--data-dir", "/nonexistent/mnist"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("/nonexistent/mnist") && stderr.contains("--data-dir"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn corrupt_data_is_reported() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in densekit::data::MNIST_FILES {
        std::fs::write(dir.join(name), b"not an idx file").unwrap();
    }
    let (code, stderr) = run(&["--data-dir", dir.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("train-images-idx3-ubyte") && stderr.contains("magic"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mismatched_model_file_is_reported() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    densekit::mlp::Mlp::new(&[100, 10], densekit::activation::Activation::Relu, 1)
        .save(&path)
        .unwrap();
    let (code, stderr) = run(&["--load", path.to_str().unwrap(), "--eval-only"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("m.safetensors") && stderr.contains("100 inputs"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_with_a_different_hidden_is_an_error() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-hidden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    densekit::mlp::Mlp::new(&[784, 32, 10], densekit::activation::Activation::Relu, 1)
        .save(&path)
        .unwrap();
    let (code, stderr) = run(&[
        "--load",
        path.to_str().unwrap(),
        "--eval-only",
        "--hidden",
        "64",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("784-64-10")
            && stderr.contains("784-32-10")
            && stderr.contains("leave out --hidden"),
        "{stderr}"
    );
    // The model's own shape, or no --hidden at all, is fine.
    for extra in [&["--hidden", "32"][..], &[]] {
        let (code, stderr) = run(&[
            &["--load", path.to_str().unwrap(), "--eval-only"][..],
            extra,
        ]
        .concat());
        assert_eq!(code, 0, "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nesterov_and_adamw_are_offered() {
    for (optimizer, shown) in [
        ("nesterov", "SGD lr 0.05 Nesterov momentum 0.9"),
        ("adamw", "AdamW lr 0.003 weight decay 0.01"),
    ] {
        // Not a terminal here: --log-interval 0 prints a progress line per step.
        let out = Command::new(env!("CARGO_BIN_EXE_train_mnist"))
            .args([
                "--hidden",
                "none",
                "--epochs",
                "1",
                "--batch-size",
                "512",
                "--optimizer",
                optimizer,
            ])
            .args(["--log-interval", "0"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(shown), "--optimizer {optimizer}: {stdout}");
        let steps = stdout
            .lines()
            .filter(|l| l.starts_with("epoch   1: step "))
            .count();
        assert!(
            steps >= 100,
            "{steps} progress lines for 118 steps: {stdout}"
        );
    }
    assert_fails(
        &["--log-interval", "soon"],
        "`soon` is not a number of seconds",
    );
}

#[test]
fn one_epoch_writes_metrics_and_plot() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (metrics, plot) = (dir.join("m.jsonl"), dir.join("curves.svg"));
    let model = dir.join("model.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_train_mnist"))
        .args([
            "--hidden",
            "none",
            "--epochs",
            "1",
            "--batch-size",
            "256",
            "--optimizer",
            "sgd",
            "--lr",
            "0.1",
        ])
        .args([
            "--metrics-out",
            metrics.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
            "--save",
            model.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("test accuracy") && stdout.contains("confusion matrix"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&metrics).unwrap();
    let (config, line) = text.split_once('\n').unwrap();
    let config: serde_json::Value = serde_json::from_str(config).unwrap();
    assert_eq!(config["config"]["model"], "784-10", "{config}");
    assert_eq!(config["config"]["batch_size"], 256, "{config}");
    // The model trained on pixels says how its inputs were normalized.
    let notes = densekit::mlp::Mlp::metadata(&model).unwrap();
    assert_eq!(notes["normalization"], "pixels/255");
    for field in [
        "\"epoch\":1",
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "epoch_seconds",
        "elapsed_seconds",
    ] {
        assert!(line.contains(field), "metrics line lacks {field}: {line}");
    }
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unreadable_models_fail_before_the_data_is_loaded() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sparse = dir.join("sparse.safetensors");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    // A model with one weight made NaN in the file (save refuses NaN).
    let net = densekit::mlp::Mlp::new(&[784, 10], densekit::activation::Activation::Relu, 1);
    let good = dir.join("good.safetensors");
    net.save(&good).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    let first = net.params()[0].to_le_bytes();
    let at = bytes.windows(4).rposition(|w| w == first).unwrap();
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let nan = dir.join("nan.safetensors");
    std::fs::write(&nan, bytes).unwrap();
    for (path, needle) in [
        (sparse.to_str().unwrap(), "not a safetensors file"),
        ("/dev/zero", "not a regular file"),
        (nan.to_str().unwrap(), "NaN or infinite"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_train_mnist"))
            .args(["--load", path, "--eval-only"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{path}: {stderr}");
        assert!(
            stderr.contains(needle) && stderr.contains(path),
            "{path}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains("data:"),
            "{path}: the data was loaded first: {stdout}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn divergence_on_the_last_step_writes_no_model() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-div-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("m.safetensors");
    std::fs::write(&model, b"the previous model").unwrap();
    let (code, stderr) = run(&[
        "--optimizer",
        "adam",
        "--lr",
        "1e38",
        "--batch-size",
        "60000",
        "--epochs",
        "1",
        "--save",
        model.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("diverged"), "{stderr}");
    assert_eq!(std::fs::read(&model).unwrap(), b"the previous model");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_paths_are_checked_before_training() {
    for flag in ["--save", "--plot", "--metrics-out"] {
        let out = Command::new(env!("CARGO_BIN_EXE_train_mnist"))
            // A data folder that does not exist either: the output path must
            // be the error, so it was checked before any data was read.
            .args([
                flag,
                "/nonexistent-densekit-dir/out",
                "--data-dir",
                "/nonexistent-mnist",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(flag) && stderr.contains("/nonexistent-densekit-dir/out"),
            "{stderr}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("epoch"), "{flag}: trained first: {stdout}");
    }
}

/// A metrics file or checkpoint that cannot be written costs itself, not
/// the model.
#[test]
fn failed_metrics_write_still_saves_the_model() {
    if !std::path::Path::new("/dev/full").exists() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("densekit-cli-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("m.safetensors");
    let (code, stderr) = run(&[
        "--hidden",
        "none",
        "--epochs",
        "1",
        "--metrics-out",
        "/dev/full",
        "--save",
        model.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--metrics-out /dev/full"), "{stderr}");
    assert_eq!(densekit::mlp::Mlp::load(&model).unwrap().sizes(), [784, 10]);
    // Nor does a checkpoint that cannot be written.
    std::fs::remove_file(&model).unwrap();
    let (code, stderr) = run(&[
        "--hidden",
        "none",
        "--epochs",
        "1",
        "--checkpoint",
        "/dev/full",
        "--save",
        model.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--checkpoint"), "{stderr}");
    assert_eq!(densekit::mlp::Mlp::load(&model).unwrap().sizes(), [784, 10]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts `train_mnist` with `args`, waits until it has printed `epochs`
/// finished epochs (none: at once), then sends SIGINT and waits for it to
/// end: exit code 130 (or killed by the signal, if it came before the
/// handler was installed). Returns stdout and stderr.
#[cfg(unix)]
fn interrupt_after(args: &[&str], epochs: usize) -> (String, String) {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_train_mnist"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut seen, mut out) = (0, String::new());
    while seen < epochs {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "ended after {seen} epochs: {out}"
        );
        seen += usize::from(line.starts_with("epoch") && line.contains("train loss"));
        out.push_str(&line);
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    stdout.read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.code() == Some(130) || status.signal() == Some(2),
        "not interrupted: {status:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    (out, err)
}

/// SIGINT after some epochs: the metrics file holds every epoch the run
/// printed, complete, and a run that never finishes an epoch leaves the
/// previous file as it was.
#[cfg(unix)]
#[test]
fn interrupted_run_keeps_its_finished_epochs() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-int-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = dir.join("m.jsonl");
    std::fs::write(&metrics, "the previous run\n").unwrap();
    let args = [
        "--hidden",
        "32",
        "--epochs",
        "1000",
        "--optimizer",
        "sgd",
        "--metrics-out",
        metrics.to_str().unwrap(),
    ];
    // Interrupted at once, long before its first epoch ends.
    interrupt_after(&args, 0);
    assert_eq!(
        std::fs::read_to_string(&metrics).unwrap(),
        "the previous run\n"
    );
    interrupt_after(&args, 3);
    let text = std::fs::read_to_string(&metrics).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let config: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(config["config"]["epochs"], 1000, "{text}");
    let lines = &lines[1..];
    assert!(
        (3..1000).contains(&lines.len()),
        "{} epochs in the file",
        lines.len()
    );
    for (i, line) in lines.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["epoch"], i + 1, "{text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run interrupted by SIGINT (model and checkpoint saved), then resumed
/// from its checkpoint, ends with the bits of the run never interrupted:
/// the saved weights and every metric but the timings.
#[cfg(unix)]
#[test]
fn interrupted_and_resumed_run_matches_the_uninterrupted_run() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let flags = |tag: &str| {
        let mut flags: Vec<String> = [
            "--hidden",
            "64",
            "--epochs",
            "30",
            "--batch-size",
            "32",
            "--optimizer",
            "adam",
            "--lr",
            "0.001",
        ]
        .map(String::from)
        .to_vec();
        for (flag, file) in [
            ("--save", "model"),
            ("--metrics-out", "metrics"),
            ("--checkpoint", "ckpt"),
        ] {
            flags.extend([flag.to_string(), path(&format!("{tag}.{file}"))]);
        }
        flags
    };
    let whole = flags("whole");
    let whole: Vec<&str> = whole.iter().map(String::as_str).collect();
    let (code, stderr) = run(&whole);
    assert_eq!(code, 0, "{stderr}");
    let parts = flags("parts");
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let (_, stderr) = interrupt_after(&parts, 2);
    assert!(
        stderr.contains("interrupted after epoch") && stderr.contains("--resume"),
        "{stderr}"
    );
    let checkpoint = path("parts.ckpt");
    let mut resumed = parts.clone();
    resumed.extend(["--resume", &checkpoint]);
    let (code, stderr) = run(&resumed);
    assert_eq!(code, 0, "{stderr}");
    let load = |tag: &str| densekit::mlp::Mlp::load(std::path::Path::new(&path(tag))).unwrap();
    assert_eq!(load("parts.model"), load("whole.model"), "weights differ");
    let metrics = |tag: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path(tag))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let m = v.as_object_mut().unwrap();
                m.remove("epoch_seconds");
                m.remove("elapsed_seconds");
                v
            })
            .collect()
    };
    let want = metrics("whole.metrics");
    assert_eq!(want.len(), 1 + 30, "a configuration line and 30 epochs");
    assert_eq!(want[0]["config"]["optimizer"], "Adam lr 0.001");
    assert_eq!(metrics("parts.metrics"), want);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An epoch count no run reaches still runs (until interrupted), and more
/// threads than cores are capped with a note, never a panic.
#[cfg(unix)]
#[test]
fn extreme_epochs_and_threads_run() {
    let (stdout, stderr) = interrupt_after(
        &[
            "--hidden",
            "none",
            "--epochs",
            "18446744073709551615",
            "--threads",
            "10000",
        ],
        1,
    );
    assert!(stdout.contains("--threads 10000 is more than"), "{stdout}");
    assert!(stderr.contains("interrupted after epoch"), "{stderr}");
}

#[test]
fn networks_too_large_for_memory_are_refused_before_allocating() {
    let (code, stderr) = run(&["--hidden", "100000000"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("784-100000000-10")
            && stderr.contains("GB")
            && stderr.contains("available"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--hidden", "100000000000000000"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("more parameters than"), "{stderr}");
}

/// A learning rate that blows the weights up without a NaN: a clear
/// "diverged", a non-zero exit, and the previous model left as it was.
#[test]
fn finite_divergence_is_an_error_and_saves_nothing() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-lr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("m.safetensors");
    for optimizer in ["sgd", "adam"] {
        std::fs::write(&model, b"the previous model").unwrap();
        let (code, stderr) = run(&[
            "--optimizer",
            optimizer,
            "--lr",
            "100",
            "--epochs",
            "3",
            "--save",
            model.to_str().unwrap(),
        ]);
        assert_ne!(code, 0, "{optimizer}");
        assert!(
            stderr.contains("diverged") && stderr.contains("no model saved"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&model).unwrap(), b"the previous model");
    }
    // A run that has not learned yet (at chance, its loss near a uniform
    // guess's) is slow, not diverged.
    let (code, stderr) = run(&[
        "--optimizer",
        "sgd",
        "--lr",
        "1e-7",
        "--hidden",
        "32",
        "--epochs",
        "2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Threads the system refuses (a process limit, as for an unprivileged user
/// under `prlimit --nproc`): a one-line error, never a panic, whether the
/// threads were asked for or are rayon's default pool. Needs root (to run
/// as `nobody`), `prlimit` and `setpriv`; skipped elsewhere.
#[cfg(unix)]
#[test]
fn refused_threads_are_an_error() {
    let tools = ["/usr/bin/prlimit", "/usr/bin/setpriv"];
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !root || !tools.iter().all(|t| std::path::Path::new(t).exists()) {
        return;
    }
    for threads in [None, Some("2")] {
        let mut command = Command::new(tools[0]);
        command.args([
            "--nproc=2",
            tools[1],
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]);
        command.arg(env!("CARGO_BIN_EXE_train_mnist"));
        command.args(["--hidden", "none", "--epochs", "1"]);
        if let Some(n) = threads {
            command.args(["--threads", n]);
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{threads:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{threads:?}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains("could not start a pool"), "{stderr}");
    }
}

/// Dropout, augmentation and a validation split: the same seed on one and
/// two threads writes the same metrics file (timings aside), validation is
/// reported, and `--save` keeps the best-validation weights.
#[test]
fn regularized_runs_match_across_thread_counts() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-reg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = |threads: &str| -> (Vec<serde_json::Value>, String) {
        let path = dir.join(format!("m{threads}.jsonl"));
        let model = dir.join(format!("model{threads}.safetensors"));
        let out = Command::new(env!("CARGO_BIN_EXE_train_mnist"))
            .args([
                "--hidden",
                "64,32",
                "--epochs",
                "2",
                "--dropout",
                "0.2,0.3",
                "--augment",
                "shift:1",
                "--activation",
                "prelu",
                "--max-norm",
                "3",
                "--val",
                "5000",
                "--threads",
                threads,
                "--metrics-out",
                path.to_str().unwrap(),
                "--save",
                model.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let m = v.as_object_mut().unwrap();
                m.remove("epoch_seconds");
                m.remove("elapsed_seconds");
                v
            })
            .collect();
        (lines, stdout)
    };
    let (one, stdout) = metrics("1");
    let (two, _) = metrics("2");
    assert_eq!(one, two, "metrics differ between --threads 1 and 2");
    assert_eq!(one.len(), 3);
    assert_eq!(
        one[0]["config"]["dropout"][1].as_f64(),
        Some(0.30000001192092896)
    );
    assert!(
        one[1]["val_accuracy"].as_f64().unwrap() > 0.8,
        "{:?}",
        one[1]
    );
    assert!(
        stdout.contains("validation acc") && stdout.contains("keeping the weights of epoch"),
        "{stdout}"
    );
    let model = densekit::mlp::Mlp::load(dir.join("model1.safetensors")).unwrap();
    assert_eq!(model.prelu_slopes().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
