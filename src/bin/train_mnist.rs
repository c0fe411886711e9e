//! Timed end-to-end MNIST training. Not built yet: the trainer lands with the
//! issue "MLP trainer and `train_mnist`".

fn main() {
    eprintln!(
        "train_mnist: the MLP trainer is not built yet (the GEMM core is; see README.md and PERF.md)"
    );
    std::process::exit(2);
}
