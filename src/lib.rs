//! # densekit
//!
//! SIMD-optimized numeric kernels for neural networks.
//!
//! * [`gemm`]: cache-blocked, run-time dispatched (AVX-512, AVX2+FMA, NEON
//!   or portable), rayon-threaded matrix multiplication for `f32` and
//!   `f64`, bitwise deterministic for any thread count. [`sgemm`] and [`dgemm`] take
//!   `matrixmultiply`'s exact arguments.
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
//! * [`dense`]: a layer's forward pass with bias and activation fused into
//!   the GEMM, and its one-pass backward; [`activation`], [`loss`].
//! * [`mlp`], [`optim`], [`train`], [`data`]: a multilayer perceptron on one
//!   flat parameter buffer, PyTorch's optimizers, and a deterministic
//!   trainer on any [`data::Dataset`] (`f32` or byte features; class labels
//!   trained by softmax cross-entropy, or real targets by mean squared
//!   error; optional validation and test sets).
//!
//! Examples in the repository: `examples/regression.rs` (an MLP fits a
//! function by MSE) and `examples/own_data.rs` (a classifier on CSV
//! features, no test set), both also run by `cargo test`;
//! `examples/xor.rs` (the raw dense kernels on XOR), and the
//! `train_mnist` binary (`cargo run --release --bin train_mnist`).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

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
pub use par::{Par, PoolError};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
