//! Run-time choice of the instruction set, detected once and cached.
//!
//! The release binary is built for baseline x86-64 (no `-C target-cpu`), and
//! picks the best kernel the CPU supports the first time a GEMM runs.
//! Set `DENSEKIT_ISA=scalar` (or `avx2`, `avx512`) before the process starts
//! to force a path; a forced ISA that the CPU lacks falls back to the best available one
//! (running it would be undefined behaviour), which tests detect through
//! [`Isa::selected`].

use std::fmt;
use std::sync::OnceLock;

/// Environment variable that forces a kernel path: `scalar`, `avx2` or `avx512`.
pub const ISA_ENV_VAR: &str = "DENSEKIT_ISA";

/// An instruction set the GEMM kernels are written for.
///
/// The order is inclusion: each ISA's availability implies every earlier
/// one's, so `isa >= Isa::Avx2Fma` proves AVX2 and FMA are present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, no intrinsics; runs everywhere (aarch64 included).
    Scalar,
    /// x86-64 with AVX2 and FMA3 (Haswell, Zen and later).
    Avx2Fma,
    /// x86-64 with AVX-512F on top of AVX2 and FMA3 (Skylake-SP, Ice Lake,
    /// Zen 4 and later): 32 vector registers allow a 12-row tile.
    Avx512,
}

impl Isa {
    /// Every ISA the crate has kernels for, best last.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512];

    /// Whether this CPU can run the ISA's kernels.
    ///
    /// ```
    /// use densekit::gemm::Isa;
    /// assert!(Isa::Scalar.is_available());
    /// // Availability is inclusive: AVX-512 here means AVX2 + FMA too.
    /// assert!(!Isa::Avx512.is_available() || Isa::Avx2Fma.is_available());
    /// ```
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2Fma => avx2_fma_detected(),
            Isa::Avx512 => avx2_fma_detected() && avx512_detected(),
        }
    }

    /// The ISAs this CPU can run, best last.
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// The best ISA this CPU supports.
    pub fn best() -> Isa {
        *Isa::available()
            .last()
            .expect("Isa::Scalar is always available")
    }

    /// The ISA that [`gemm`](super::gemm), [`sgemm`](crate::sgemm) and
    /// [`dgemm`](crate::dgemm) use: [`Isa::best`], unless `DENSEKIT_ISA`
    /// names an available one. Read once per process.
    pub fn selected() -> Isa {
        static SELECTED: OnceLock<Isa> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            std::env::var(ISA_ENV_VAR)
                .ok()
                .and_then(|name| Isa::from_name(&name))
                .filter(|isa| isa.is_available())
                .unwrap_or_else(Isa::best)
        })
    }

    /// Parses the names accepted in `DENSEKIT_ISA` (`scalar`, `avx2`,
    /// `avx2-fma`, `avx512`, `avx512f`).
    ///
    /// ```
    /// use densekit::gemm::Isa;
    /// assert_eq!(Isa::from_name("scalar"), Some(Isa::Scalar));
    /// assert_eq!(Isa::from_name("AVX2"), Some(Isa::Avx2Fma));
    /// assert_eq!(Isa::from_name("avx512"), Some(Isa::Avx512));
    /// assert_eq!(Isa::from_name("sse9"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" | "avx2-fma" | "avx2fma" => Some(Isa::Avx2Fma),
            "avx512" | "avx512f" | "avx-512" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// Short lowercase name, as accepted by [`Isa::from_name`].
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Fma => "avx2-fma",
            Isa::Avx512 => "avx512",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Returned when a caller asks for an ISA this CPU does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaUnavailable(pub Isa);

impl fmt::Display for IsaUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "instruction set `{}` is not available on this CPU",
            self.0
        )
    }
}

impl std::error::Error for IsaUnavailable {}

#[cfg(target_arch = "x86_64")]
fn avx2_fma_detected() -> bool {
    // std caches the CPUID result, so this is a load and a test after the first call.
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_fma_detected() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn avx512_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_detected() -> bool {
    false
}
