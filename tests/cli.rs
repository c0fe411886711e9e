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
    assert_fails(&["--batch-size", "0"], "--batch-size must be at least 1");
    assert_fails(&["--lr", "-0.1"], "--lr must be a positive number");
    assert_fails(&["--activation", "swish"], "invalid value 'swish'");
    assert_fails(&["--hidden", "256,abc"], "`abc` is not a positive width");
    assert_fails(&["--threads", "0"], "--threads must be at least 1");
    assert_fails(&["--epochs", "0"], "--epochs must be at least 1");
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
fn one_epoch_writes_metrics_and_plot() {
    let dir = std::env::temp_dir().join(format!("densekit-cli-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (metrics, plot) = (dir.join("m.jsonl"), dir.join("curves.svg"));
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
    let line = std::fs::read_to_string(&metrics).unwrap();
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
            .args([flag, "/nonexistent-densekit-dir/out"])
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

/// A metrics file that cannot be written costs the metrics, not the model.
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
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SIGINT after some epochs: the metrics file holds every epoch the run
/// printed, complete, and a run that never finishes an epoch leaves the
/// previous file as it was.
#[cfg(unix)]
#[test]
fn interrupted_run_keeps_its_finished_epochs() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let dir = std::env::temp_dir().join(format!("densekit-cli-int-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = dir.join("m.jsonl");
    std::fs::write(&metrics, "the previous run\n").unwrap();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_train_mnist"))
            .args(["--hidden", "32", "--epochs", "1000", "--optimizer", "sgd"])
            .args(["--metrics-out", metrics.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let interrupt = |child: &mut std::process::Child| {
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(2), "not interrupted: {status:?}");
    };
    // Interrupted at once, long before its first epoch ends.
    let mut child = start();
    interrupt(&mut child);
    assert_eq!(
        std::fs::read_to_string(&metrics).unwrap(),
        "the previous run\n"
    );
    let mut child = start();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = 0;
    for line in stdout.lines() {
        if line.unwrap().starts_with("epoch") {
            seen += 1;
            if seen == 3 {
                break;
            }
        }
    }
    assert_eq!(seen, 3, "the run ended before three epochs");
    interrupt(&mut child);
    let text = std::fs::read_to_string(&metrics).unwrap();
    let lines: Vec<&str> = text.lines().collect();
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
