//! The instruction-set layer: which ISA runs, and the vocabulary every SIMD
//! path is written in. It sits below `gemm`, `activation`, `optim` and the
//! data loaders, and depends on none of them.
//!
//! * [`Isa`]: the instruction sets densekit has code for, detected once and
//!   cached. The release binary is built for the baseline target (no
//!   `-C target-cpu`) and picks the best ISA the CPU supports the first time
//!   one is needed. Set `DENSEKIT_ISA=scalar` (or `avx2`, `avx512`, `neon`)
//!   before the process starts to force a path; a forced ISA that the CPU
//!   lacks falls back to the best available one (running it would be
//!   undefined behaviour), which tests detect through [`Isa::selected`].
//! * [`Lanes`]: lane-wise arithmetic, implemented by the scalars (the
//!   portable path) and by each ISA's vectors (`x86.rs`, `neon.rs`).
//! * [`Simd`]: an ISA as a type (its `f32` and `f64` lanes, and a
//!   `#[target_feature]` shim that runs code with its features enabled);
//!   [`dispatch`] runs a [`SimdFn`] on the selected one. Every SIMD path
//!   outside the GEMM kernels goes through it.
//! * [`Element`]: `f32` and `f64`, with their lane type per ISA.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

mod element;
mod lanes;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use element::Element;
pub(crate) use element::VectorOf;
pub(crate) use lanes::MAX_LANES;
pub use lanes::{Lanes, Portable};
#[cfg(target_arch = "aarch64")]
pub use neon::{F32x4, F64x2, Neon};
#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2Fma, Avx512, F32x8, F32x16, F64x4, F64x8};

/// Environment variable that forces a kernel path: `scalar`, `avx2`,
/// `avx512` or `neon`.
///
/// ```
/// use densekit::gemm::ISA_ENV_VAR;
/// // `DENSEKIT_ISA=scalar cargo test` runs every kernel on the portable path.
/// assert_eq!(ISA_ENV_VAR, "DENSEKIT_ISA");
/// ```
pub const ISA_ENV_VAR: &str = "DENSEKIT_ISA";

/// An instruction set densekit has kernels for.
///
/// Availability is decided per ISA by [`Isa::is_available`], from the CPU
/// features that ISA's code is compiled with; no order between ISAs is
/// implied (they span architectures).
///
/// ```
/// use densekit::gemm::{gemm_with_isa, Accum, Isa, MatMut, MatRef, Par};
/// // Every available kernel path gives the same product for exact inputs.
/// let (a, b) = ([1.0f32, 2.0, 3.0, 4.0], [5.0f32, 6.0, 7.0, 8.0]);
/// for isa in Isa::available() {
///     let mut c = [0.0f32; 4];
///     gemm_with_isa(isa, MatMut::from_row_major(&mut c, 2, 2), Accum::Replace,
///         MatRef::from_row_major(&a, 2, 2), MatRef::from_row_major(&b, 2, 2), 1.0, Par::Seq).unwrap();
///     assert_eq!(c, [19.0, 22.0, 43.0, 50.0], "{isa}");
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust, no intrinsics; runs everywhere.
    Scalar,
    /// x86-64 with AVX2 and FMA3 (Haswell, Zen and later).
    Avx2Fma,
    /// x86-64 with AVX-512F, AVX2 and FMA3 (Skylake-SP, Ice Lake, Zen 4 and
    /// later): 32 vector registers allow a 12-row tile.
    Avx512,
    /// aarch64 with Advanced SIMD (NEON, part of every aarch64 CPU): 32
    /// 128-bit registers allow an 8-row tile.
    Neon,
}

impl Isa {
    /// Every ISA the crate has kernels for, in order of preference on its
    /// architecture (best last).
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Neon, Isa::Avx2Fma, Isa::Avx512];

    /// Whether this CPU can run the ISA's code: each ISA lists the CPU
    /// features it is compiled with, and all of them must be detected.
    ///
    /// ```
    /// use densekit::gemm::Isa;
    /// assert!(Isa::Scalar.is_available());
    /// // The AVX-512 code is also compiled with AVX2 and FMA.
    /// assert!(!Isa::Avx512.is_available() || Isa::Avx2Fma.is_available());
    /// ```
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => x86::avx2_fma_detected(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::avx2_fma_detected() && x86::avx512_detected(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => neon::detected(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The ISAs this CPU can run, best last.
    ///
    /// ```
    /// use densekit::gemm::Isa;
    /// let isas = Isa::available();
    /// assert_eq!(isas[0], Isa::Scalar); // always there
    /// assert_eq!(isas.last(), Some(&Isa::best()));
    /// ```
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// The best ISA this CPU supports.
    ///
    /// ```
    /// use densekit::gemm::Isa;
    /// assert!(Isa::best().is_available());
    /// ```
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .rfind(|isa| isa.is_available())
            .expect("Isa::Scalar is always available")
    }

    /// The ISA that [`gemm`](crate::gemm::gemm), [`sgemm`](crate::sgemm),
    /// [`dgemm`](crate::dgemm) and every other vectorized path use:
    /// [`Isa::best`], unless `DENSEKIT_ISA` names an available one. Read
    /// once per process.
    ///
    /// ```
    /// use densekit::gemm::Isa;
    /// let isa = Isa::selected();
    /// assert!(isa.is_available());
    /// println!("densekit runs its {} kernels here", isa.name());
    /// ```
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
    /// `avx2-fma`, `avx512`, `avx512f`, `neon`, `asimd`).
    ///
    /// ```
    /// use densekit::gemm::Isa;
    /// assert_eq!(Isa::from_name("scalar"), Some(Isa::Scalar));
    /// assert_eq!(Isa::from_name("AVX2"), Some(Isa::Avx2Fma));
    /// assert_eq!(Isa::from_name("avx512"), Some(Isa::Avx512));
    /// assert_eq!(Isa::from_name("neon"), Some(Isa::Neon));
    /// assert_eq!(Isa::from_name("sse9"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" | "avx2-fma" | "avx2fma" => Some(Isa::Avx2Fma),
            "avx512" | "avx512f" | "avx-512" => Some(Isa::Avx512),
            "neon" | "asimd" => Some(Isa::Neon),
            _ => None,
        }
    }

    /// Whether code of this ISA has run in this process: a GEMM kernel,
    /// a pack, an activation pass, an optimizer update or a vectorized
    /// `exp`. Lets a test (or a user) confirm that the path it meant to
    /// measure really ran, and that a forced `DENSEKIT_ISA` governed every
    /// vectorized path.
    ///
    /// ```
    /// use densekit::gemm::{gemm, Accum, Isa, MatMut, MatRef, Par};
    /// let a = [1.0f32; 4];
    /// let mut c = [0.0f32; 4];
    /// gemm(MatMut::from_row_major(&mut c, 2, 2), Accum::Replace,
    ///      MatRef::from_row_major(&a, 2, 2), MatRef::from_row_major(&a, 2, 2), 1.0, Par::Seq);
    /// assert!(Isa::selected().has_run());
    /// ```
    pub fn has_run(self) -> bool {
        RAN.load(Ordering::Relaxed) & self.bit() != 0
    }

    /// This ISA's bit in [`RAN`].
    const fn bit(self) -> u8 {
        1 << self as u8
    }

    /// Short lowercase name, as accepted by [`Isa::from_name`].
    ///
    /// ```
    /// use densekit::gemm::Isa;
    /// for isa in Isa::ALL {
    ///     assert_eq!(Isa::from_name(isa.name()), Some(isa));
    /// }
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Fma => "avx2-fma",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One bit per [`Isa`] whose code has run (see [`Isa::has_run`]).
static RAN: AtomicU8 = AtomicU8::new(0);

/// Records that code of `isa` is about to run. A load of a line that is
/// almost never written (each bit is set once), so hot paths can call it.
#[inline]
pub(crate) fn note_run(isa: Isa) {
    if RAN.load(Ordering::Relaxed) & isa.bit() == 0 {
        RAN.fetch_or(isa.bit(), Ordering::Relaxed);
    }
}

/// Returned when a caller asks for an ISA this CPU does not have.
///
/// ```
/// use densekit::gemm::{gemm_with_isa, Accum, Isa, IsaUnavailable, MatMut, MatRef, Par};
/// // NEON exists only on aarch64, AVX-512 only on x86-64: one of them is missing here.
/// let missing = if cfg!(target_arch = "aarch64") { Isa::Avx512 } else { Isa::Neon };
/// let mut c = [0.0f32];
/// let one = [1.0f32];
/// let result = gemm_with_isa(missing, MatMut::from_row_major(&mut c, 1, 1), Accum::Replace,
///     MatRef::from_row_major(&one, 1, 1), MatRef::from_row_major(&one, 1, 1), 1.0, Par::Seq);
/// assert_eq!(result, Err(IsaUnavailable(missing)));
/// ```
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

/// An instruction set as a type: its lane types and a shim that runs code
/// with its target features enabled.
///
/// # Safety
/// Implementations must make [`Simd::run`] compile `f.call::<Self>()` with
/// every target feature [`Simd::F32`] and [`Simd::F64`] need, and `ISA`
/// must name the [`Isa`] whose availability proves those features.
pub unsafe trait Simd: Copy + 'static {
    /// The [`Isa`] this type stands for.
    const ISA: Isa;
    /// `f32` lanes of this ISA.
    type F32: Lanes<Elem = f32>;
    /// `f64` lanes of this ISA.
    type F64: Lanes<Elem = f64>;

    /// Runs `f` compiled with this ISA's target features.
    ///
    /// # Safety
    /// `Self::ISA.is_available()`.
    unsafe fn run<F: SimdFn>(f: F) -> F::Output;
}

/// Declares a [`Simd`] type: `$name` stands for `$isa`, whose lanes are
/// `$f32`/`$f64` and whose code is compiled with `$features`. The one
/// `#[target_feature]` shim every ISA's [`Simd::run`] goes through.
macro_rules! simd_isa {
    ($(#[$doc:meta])* $name:ident: $isa:expr, $features:literal, f32: $f32:ty, f64: $f64:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name;

        // SAFETY: `run` compiles the call with `$features`, all that the lane
        // types need, and `$isa` is available only where they are detected.
        unsafe impl $crate::isa::Simd for $name {
            const ISA: $crate::isa::Isa = $isa;
            type F32 = $f32;
            type F64 = $f64;
            #[inline(always)]
            unsafe fn run<F: $crate::isa::SimdFn>(f: F) -> F::Output {
                /// `f` compiled with the ISA's features.
                ///
                /// # Safety
                /// The CPU has `$features`.
                #[target_feature(enable = $features)]
                unsafe fn shim<F: $crate::isa::SimdFn>(f: F) -> F::Output {
                    // SAFETY: the features are on (caller contract).
                    unsafe { f.call::<$name>() }
                }
                // SAFETY: the caller vouches that `$isa` is available.
                unsafe { shim(f) }
            }
        }
    };
}
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use simd_isa;

/// Code generic over the ISA, run by [`dispatch`] under the selected one's
/// target features. Implementations mark [`SimdFn::call`]
/// `#[inline(always)]` so its body is compiled inside the shim, with the
/// features on (a closure would not be: it is compiled on its own).
pub trait SimdFn {
    /// What the code returns.
    type Output;
    /// The code, on ISA `S`.
    ///
    /// # Safety
    /// Runs only inside `S::run`, that is with `S`'s target features
    /// enabled on a CPU that has them.
    unsafe fn call<S: Simd>(self) -> Self::Output;
}

/// Runs `f` on the selected ISA ([`Isa::selected`]), the one place where
/// "which ISA runs" turns into "which code runs" outside the GEMM kernels.
#[inline]
pub(crate) fn dispatch<F: SimdFn>(f: F) -> F::Output {
    let isa = Isa::selected();
    note_run(isa);
    // SAFETY (every arm): `Isa::selected` only returns available ISAs, and
    // each arm's `Simd` type stands for the ISA it matches.
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { Avx512::run(f) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { Avx2Fma::run(f) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe { Neon::run(f) },
        // SAFETY: the portable code runs on every CPU.
        _ => unsafe { Portable::run(f) },
    }
}

/// Asks the CPU to start pulling the cache line at `p` into L1. Only a
/// hint: it never faults, whatever the address; a no-op where the
/// architecture has no prefetch this crate uses.
#[inline(always)]
pub(crate) fn prefetch_l1<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86-64 baseline, and a prefetch never
    // reads architecturally or faults.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `prfm` is a hint: it never faults and changes no register or
    // memory the program can observe.
    unsafe {
        core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) p, options(nostack, readonly, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = p;
}
