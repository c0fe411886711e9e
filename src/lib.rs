//! # densekit
//!
//! SIMD-optimized numeric kernels for neural networks: a cache-blocked GEMM
//! chosen at run time for the CPU at hand (AVX-512, AVX2+FMA, NEON or
//! portable), dense layers with their bias and activation fused into it, and
//! a thin multilayer-perceptron trainer on top. Results are bitwise
//! identical for any number of threads.
//!
//! ## Which entry point for which job
//!
//! | you want to… | use |
//! |---|---|
//! | replace `matrixmultiply::sgemm`/`dgemm` (raw pointers, any strides) | [`sgemm`], [`dgemm`] |
//! | multiply checked matrix views, choosing the threads | [`gemm::gemm`] with [`gemm::MatRef`], [`gemm::MatMut`], [`gemm::Accum`], [`Par`] |
//! | multiply `ndarray` views (feature `ndarray`) | `MatRef::try_from(view)`, see `gemm::ndarray` |
//! | run a layer forward (`act(x·wᵀ + b)`) or backward in one pass | [`dense`], [`activation::Activation`], [`loss`] |
//! | build, train, save and load an MLP | [`mlp::Mlp`], [`optim::Optimizer`], [`train::train`], [`data::Dataset`] |
//! | serve a trained MLP with low latency | [`mlp::PackedMlp`] |
//! | train on MNIST from the command line | `cargo run --release --bin train_mnist` |
//!
//! ## A product
//!
//! ```
//! use densekit::gemm::{gemm, Accum, MatMut, MatRef, Par};
//! let a = [1.0f32, 2.0, 3.0, 4.0]; // 2×2 row-major
//! let mut c = [0.0f32; 4];
//! gemm(MatMut::from_row_major(&mut c, 2, 2), Accum::Replace,
//!      MatRef::from_row_major(&a, 2, 2), MatRef::from_row_major(&a, 2, 2).t(), 1.0, Par::Auto);
//! assert_eq!(c, [5.0, 11.0, 11.0, 25.0]); // A·Aᵀ
//! ```
//!
//! ## A network
//!
//! [`mlp`], [`optim`], [`train`] and [`data`] give a multilayer perceptron
//! on one flat parameter buffer, PyTorch's optimizers (with PyTorch's
//! defaults), and a deterministic trainer on any [`data::Dataset`] (`f32`
//! or byte features; class labels trained by softmax cross-entropy, or real
//! targets by mean squared error; optional validation and test sets).
//!
//! Examples in the repository: `examples/regression.rs` (an MLP fits a
//! function by MSE) and `examples/own_data.rs` (a classifier on CSV
//! features, no test set), both also run by `cargo test`;
//! `examples/xor.rs` (the raw dense kernels on XOR), and the
//! `train_mnist` binary (`cargo run --release --bin train_mnist`).
//!
//! ## Features
//!
//! * `cli` (default): the `train_mnist` binary's dependencies (clap,
//!   indicatif, plotters, ctrlc); the library needs none of them
//!   (`default-features = false`).
//! * `ndarray`: zero-copy conversions between `ndarray` views and densekit's.
//! * `openblas`: benches only, OpenBLAS as a measured peer.
//!
//! How fast it is, and how to measure that on your machine: `PERF.md`;
//! why it is built as it is: `docs/design.md`.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod activation;
pub mod atomic_file;
pub mod data;
pub mod dense;
pub mod gemm;
mod isa;
pub mod loss;
pub mod mlp;
pub mod optim;
mod par;
mod rng;
mod simd;
pub mod train;

pub use gemm::raw::{dgemm, sgemm};
#[doc(hidden)]
pub use par::helper_starts;
pub use par::{Par, PoolError};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
