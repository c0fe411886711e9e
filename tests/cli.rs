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
