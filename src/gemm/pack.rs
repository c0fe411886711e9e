//! Packing: copying blocks of A and B into the sliver layout the microkernels read.
//!
//! A block of A (`mc × kc`) becomes `⌈mc/MR⌉` slivers of `kc × MR` values,
//! a panel of B (`kc × nc`) becomes `⌈nc/NR⌉` slivers of `kc × NR` values, each
//! stored k-major so the kernel streams them with unit stride. Rows or
//! columns past the matrix edge are zero-filled; they only ever feed tile
//! entries that the edge path discards.
//!
//! Both are the same operation: packing a B sliver is packing an A sliver of
//! `Bᵀ`, so one routine, [`pack_sliver`], serves both.
//!
//! Pack buffers are cache-line aligned and reused per thread (see
//! [`PackBuf`]), so a GEMM call does not allocate once the buffers have grown.

use std::cell::Cell;
use std::thread::LocalKey;

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::Shared;
use crate::isa::{Element, Isa};

/// The transpose of `src` with rows padded to `width`: `out[p·width + i] =
/// src[i, p]` for `i < src.nrows()`, `p < src.ncols()`, and zero for
/// `src.nrows() ≤ i < width`. The same operation as packing one sliver
/// (8×8 register transposes for row-major `f32`); a dense layer's backward
/// pass uses it to turn `dwᵀ` into `dw`.
///
/// # Panics
/// If `width < src.nrows()` or `out.len() != src.ncols() · width`.
#[track_caller]
pub(crate) fn transpose_padded<T: Element>(src: super::MatRef<'_, T>, width: usize, out: &mut [T]) {
    let (rows, cols) = src.shape();
    assert!(
        width >= rows && out.len() == cols * width,
        "transpose_padded: {rows}×{cols} source, width {width}, output of {}",
        out.len()
    );
    if rows == 0 || cols == 0 {
        out.fill(T::ZERO);
        return;
    }
    let strides = [src.row_stride(), src.col_stride()];
    // SAFETY: a MatRef addresses every (i, p) with i < rows, p < cols inside
    // its slice, and out holds cols slivers of `width` values.
    unsafe { pack_sliver(width, rows, src.as_ptr(), strides, out) }
}

/// Packs one sliver: `out[p·w + i] = src[i·s_w + p·s_k]` for `i < valid`,
/// zero for `valid ≤ i < w`, over `p < kc` (`out.len() == kc·w`).
///
/// Full slivers of the kernels' widths take fixed-width paths the compiler
/// unrolls (a row copy becomes a few vector moves instead of a `memcpy`
/// call; a transposing pack reads `w` streams in lockstep).
///
/// # Safety
/// `src + i·s_w + p·s_k` must be readable for `i < valid`, `p < kc`.
unsafe fn pack_sliver<T: Element>(
    w: usize,
    valid: usize,
    src: *const T,
    strides: [isize; 2],
    out: &mut [T],
) {
    debug_assert!(valid <= w && out.len().is_multiple_of(w));
    let [s_w, s_k] = strides;
    if s_w != 1 && s_k == 1 && core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>() {
        // A transposing pack of f32 (Pod, same size: the cast is exact),
        // through register transposes where the selected ISA has them.
        let out: &mut [f32] = bytemuck::cast_slice_mut(out);
        // SAFETY: forwarded caller contract (`valid` lines of kc contiguous values).
        if unsafe { pack_transposed_f32(w, valid, src.cast(), s_w, out) } {
            return;
        }
    }
    // SAFETY (each arm): forwarded caller contract.
    unsafe {
        match w {
            _ if valid < w => pack_sliver_any(w, valid, src, strides, out),
            4 => pack_full_sliver::<T, 4>(src, strides, out),
            6 => pack_full_sliver::<T, 6>(src, strides, out),
            8 => pack_full_sliver::<T, 8>(src, strides, out),
            12 => pack_full_sliver::<T, 12>(src, strides, out),
            16 => pack_full_sliver::<T, 16>(src, strides, out),
            32 => pack_full_sliver::<T, 32>(src, strides, out),
            64 => pack_full_sliver::<T, 64>(src, strides, out),
            _ => pack_sliver_any(w, valid, src, strides, out),
        }
    }
}

/// [`pack_sliver`] for a full sliver of compile-time width `W`.
///
/// # Safety
/// As [`pack_sliver`] with `valid = W`.
#[inline(always)]
unsafe fn pack_full_sliver<T: Element, const W: usize>(
    src: *const T,
    [s_w, s_k]: [isize; 2],
    out: &mut [T],
) {
    let (dst, _) = out.as_chunks_mut::<W>();
    let kc = dst.len();
    if s_w == 1 {
        for (p, dst) in dst.iter_mut().enumerate() {
            // SAFETY: W contiguous readable values start at (0, p); unaligned read.
            *dst = unsafe {
                src.offset(p as isize * s_k)
                    .cast::<[T; W]>()
                    .read_unaligned()
            };
        }
    } else if s_k == 1 {
        // SAFETY: each of the W source lines holds kc contiguous readable values.
        let lines: [&[T]; W] = core::array::from_fn(|i| unsafe {
            core::slice::from_raw_parts(src.offset(i as isize * s_w), kc)
        });
        for (p, dst) in dst.iter_mut().enumerate() {
            for i in 0..W {
                dst[i] = lines[i][p];
            }
        }
    } else {
        // SAFETY: forwarded caller contract.
        unsafe { pack_sliver_any(W, W, src, [s_w, s_k], out) }
    }
}

/// `out[p·w + i] = src[i·s_w + p]` for `i < valid`, `p < kc = out.len() / w`,
/// and zero for `valid ≤ i < w`, with register transposes on the selected
/// ISA (8×8 on AVX2 and AVX-512, 4×4 on NEON): a transposing pack, as for
/// B = wᵀ in a dense layer's forward pass, would otherwise cost a sizable
/// part of the product. Returns false, having done nothing, on the portable path (the
/// caller then packs element by element).
///
/// # Safety
/// `valid ≤ w`, and `src + i·s_w + p` is readable for `i < valid`, `p < kc`.
unsafe fn pack_transposed_f32(
    w: usize,
    valid: usize,
    src: *const f32,
    s_w: isize,
    out: &mut [f32],
) -> bool {
    let isa = Isa::selected();
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma | Isa::Avx512 => {
            crate::isa::note_run(isa);
            // SAFETY: both ISAs include AVX2, and `Isa::selected` returns
            // only available ones; the pointer contract is forwarded.
            unsafe { x86::pack_transposed_f32_avx2(w, valid, src, s_w, out) };
            true
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => {
            crate::isa::note_run(isa);
            // SAFETY: NEON was detected (`Isa::selected` returns only
            // available ISAs); the pointer contract is forwarded.
            unsafe { neon::pack_transposed_f32(w, valid, src, s_w, out) };
            true
        }
        _ => false,
    }
}

/// Transposing packs with x86 shuffles.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// [`pack_transposed_f32`](super::pack_transposed_f32) with 8×8 AVX2
    /// transposes.
    ///
    /// # Safety
    /// The CPU supports AVX2; as [`pack_transposed_f32`](super::pack_transposed_f32).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pack_transposed_f32_avx2(
        w: usize,
        valid: usize,
        src: *const f32,
        s_w: isize,
        out: &mut [f32],
    ) {
        let groups = valid / 8 * 8;
        if valid < w {
            // Padding lines: one memset for the whole sliver beats a zero
            // store per row in the row loops.
            out.fill(0.0);
        }
        let quads = groups + (valid - groups) / 4 * 4;
        // SAFETY: forwarded caller contract; groups ≤ quads ≤ valid < quads + 4.
        unsafe {
            pack_octets(w, groups, src, s_w, out);
            if quads > groups {
                pack_quad(w, groups, src, s_w, out);
            }
            pack_last_lines(w, [quads, valid], src, s_w, out);
        }
    }

    /// An 8×8 transpose: rows `r[q]` = line q, values p..p+8; after it, row
    /// j holds value p + j of the 8 lines.
    #[target_feature(enable = "avx2")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// Lines `0..groups` (a multiple of 8) through 8×8 transposes.
    ///
    /// # Safety
    /// As [`pack_transposed_f32_avx2`], with `groups ≤ valid`.
    #[target_feature(enable = "avx2")]
    unsafe fn pack_octets(w: usize, groups: usize, src: *const f32, s_w: isize, out: &mut [f32]) {
        let kc = out.len() / w;
        let whole = kc / 8 * 8;
        // Lines in pairs of octets where there are 16: each output row then
        // gets 16 values (a whole cache line of a 64-byte-aligned sliver) in
        // one pass, instead of two halves in two passes over the sliver.
        let mut i0 = 0;
        while i0 < groups {
            let width = if i0 + 16 <= groups { 16 } else { 8 };
            // Lines past `width` repeat the last one and are never read.
            let lines: [*const f32; 16] = core::array::from_fn(|q| {
                src.wrapping_offset((i0 + q.min(width - 1)) as isize * s_w)
            });
            for p in (0..whole).step_by(8) {
                for half in (0..width).step_by(8) {
                    // SAFETY: lines i0 + half + q < i0 + width ≤ valid hold kc ≥ p + 8
                    // readable values (caller contract).
                    let c = transpose8(core::array::from_fn(|q| unsafe {
                        _mm256_loadu_ps(lines[half + q].add(p))
                    }));
                    for (j, c) in c.into_iter().enumerate() {
                        let dst = &mut out[(p + j) * w + i0 + half..][..8];
                        // SAFETY: `dst` holds exactly 8 writable f32.
                        unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), c) };
                    }
                }
            }
            for p in whole..kc {
                for (q, line) in lines[..width].iter().enumerate() {
                    // SAFETY: p < kc is inside line i0 + q < valid (caller contract).
                    out[p * w + i0 + q] = unsafe { *line.add(p) };
                }
            }
            i0 += width;
        }
    }

    /// Lines `groups..groups + 4` (MR = 12 is 8 + 4) through 4×4 transposes.
    ///
    /// # Safety
    /// As [`pack_transposed_f32_avx2`], with `groups + 4 ≤ valid`.
    #[target_feature(enable = "avx2")]
    unsafe fn pack_quad(w: usize, groups: usize, src: *const f32, s_w: isize, out: &mut [f32]) {
        let kc = out.len() / w;
        // SAFETY: lines groups..groups+4 ≤ valid are readable for kc values (caller contract).
        let lines: [*const f32; 4] =
            core::array::from_fn(|q| unsafe { src.offset((groups + q) as isize * s_w) });
        let whole = kc / 4 * 4;
        for p in (0..whole).step_by(4) {
            // SAFETY: p + 4 ≤ kc, so each line has 4 readable values at p.
            let r: [__m128; 4] = core::array::from_fn(|q| unsafe { _mm_loadu_ps(lines[q].add(p)) });
            let t0 = _mm_unpacklo_ps(r[0], r[1]);
            let t1 = _mm_unpackhi_ps(r[0], r[1]);
            let t2 = _mm_unpacklo_ps(r[2], r[3]);
            let t3 = _mm_unpackhi_ps(r[2], r[3]);
            let c = [
                _mm_movelh_ps(t0, t2),
                _mm_movehl_ps(t2, t0),
                _mm_movelh_ps(t1, t3),
                _mm_movehl_ps(t3, t1),
            ];
            for (j, c) in c.into_iter().enumerate() {
                let dst = &mut out[(p + j) * w + groups..][..4];
                // SAFETY: `dst` holds exactly 4 writable f32.
                unsafe { _mm_storeu_ps(dst.as_mut_ptr(), c) };
            }
        }
        for p in whole..kc {
            for (q, line) in lines.iter().enumerate() {
                // SAFETY: p < kc is inside line q (caller contract).
                out[p * w + groups + q] = unsafe { *line.add(p) };
            }
        }
    }

    /// The last valid lines `quads..valid` (fewer than 4).
    ///
    /// # Safety
    /// As [`pack_transposed_f32_avx2`], with `quads ≤ valid < quads + 4`.
    #[target_feature(enable = "avx2")]
    unsafe fn pack_last_lines(
        w: usize,
        [quads, valid]: [usize; 2],
        src: *const f32,
        s_w: isize,
        out: &mut [f32],
    ) {
        // The last valid lines (fewer than 4), one output row at a time so
        // the writes stay in one cache line; padding lines were zeroed above.
        // Only the first valid − quads (< 4) pointers are dereferenced.
        let lines: [*const f32; 4] =
            core::array::from_fn(|q| src.wrapping_offset((quads + q) as isize * s_w));
        let tail = &lines[..valid - quads];
        if !tail.is_empty() {
            for (p, row) in out.chunks_exact_mut(w).enumerate() {
                for (slot, line) in row[quads..valid].iter_mut().zip(tail) {
                    // SAFETY: line quads + q < valid holds kc readable values
                    // (caller contract), and p < kc.
                    *slot = unsafe { *line.add(p) };
                }
            }
        }
    }
}

/// Transposing packs with NEON permutes.
#[cfg(target_arch = "aarch64")]
mod neon {
    use core::arch::aarch64::*;

    /// [`pack_transposed_f32`](super::pack_transposed_f32) with 4×4 NEON
    /// transposes (`trn1`/`trn2` on 32-bit, then on 64-bit lanes): NR = 12
    /// is three groups of 4 lines, MR = 8 two.
    ///
    /// # Safety
    /// The CPU supports NEON; as [`pack_transposed_f32`](super::pack_transposed_f32).
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn pack_transposed_f32(
        w: usize,
        valid: usize,
        src: *const f32,
        s_w: isize,
        out: &mut [f32],
    ) {
        let kc = out.len() / w;
        let whole = kc / 4 * 4;
        let quads = valid / 4 * 4;
        if valid < w {
            // Padding lines: one memset for the whole sliver.
            out.fill(0.0);
        }
        for i0 in (0..quads).step_by(4) {
            // SAFETY: lines i0..i0 + 4 ≤ valid hold kc readable values (caller contract).
            let lines: [*const f32; 4] =
                core::array::from_fn(|q| unsafe { src.offset((i0 + q) as isize * s_w) });
            for p in (0..whole).step_by(4) {
                // SAFETY: p + 4 ≤ kc, so each line has 4 readable values at p.
                let r: [float32x4_t; 4] =
                    core::array::from_fn(|q| unsafe { vld1q_f32(lines[q].add(p)) });
                // t0 = [a0 b0 a2 b2], t1 = [a1 b1 a3 b3], t2/t3 likewise for c, d.
                let t0 = vreinterpretq_f64_f32(vtrn1q_f32(r[0], r[1]));
                let t1 = vreinterpretq_f64_f32(vtrn2q_f32(r[0], r[1]));
                let t2 = vreinterpretq_f64_f32(vtrn1q_f32(r[2], r[3]));
                let t3 = vreinterpretq_f64_f32(vtrn2q_f32(r[2], r[3]));
                let c = [
                    vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)),
                    vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)),
                    vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)),
                    vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)),
                ];
                for (j, c) in c.into_iter().enumerate() {
                    let dst = &mut out[(p + j) * w + i0..][..4];
                    // SAFETY: `dst` holds exactly 4 writable f32.
                    unsafe { vst1q_f32(dst.as_mut_ptr(), c) };
                }
            }
            for p in whole..kc {
                for (q, line) in lines.iter().enumerate() {
                    // SAFETY: p < kc is inside line i0 + q < valid (caller contract).
                    out[p * w + i0 + q] = unsafe { *line.add(p) };
                }
            }
        }
        // The last valid lines (fewer than 4), one output row at a time so
        // the writes stay in one cache line; padding lines were zeroed above.
        for (p, row) in out.chunks_exact_mut(w).enumerate() {
            for (i, slot) in row.iter_mut().enumerate().take(valid).skip(quads) {
                // SAFETY: line i < valid holds kc readable values (caller
                // contract), and p < kc.
                *slot = unsafe { *src.offset(i as isize * s_w).add(p) };
            }
        }
    }
}

/// [`pack_sliver`] for any width and any strides (edge slivers, odd layouts).
///
/// # Safety
/// As [`pack_sliver`].
unsafe fn pack_sliver_any<T: Element>(
    w: usize,
    valid: usize,
    src: *const T,
    [s_w, s_k]: [isize; 2],
    out: &mut [T],
) {
    let at = |i: usize, p: usize| i as isize * s_w + p as isize * s_k;
    // Walk each source line along k, so reads stream and writes stay in the L1-sized sliver.
    for i in 0..valid {
        for (p, dst) in out.chunks_exact_mut(w).enumerate() {
            // SAFETY: (i, p) is inside the readable region (i < valid, p < kc).
            dst[i] = unsafe { *src.offset(at(i, p)) };
        }
    }
    if valid < w {
        for dst in out.chunks_exact_mut(w) {
            dst[valid..].fill(T::ZERO);
        }
    }
}

/// How `mc` rows split into `⌈mc/mr⌉` slivers as evenly as possible: 32
/// rows with `mr = 6` are 6, 6, 5, 5, 5, 5, so the last sliver is not a
/// 2-row straggler. Computed once per block (three divisions), then asked
/// per sliver by [`SliverSplit::rows`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct SliverSplit {
    /// Slivers of `base + 1` rows come first, `extra` of them.
    base: usize,
    extra: usize,
}

impl SliverSplit {
    pub(crate) fn new(mc: usize, mr: usize) -> Self {
        let slivers = mc.div_ceil(mr);
        SliverSplit {
            base: mc / slivers,
            extra: mc % slivers,
        }
    }

    /// `(first row, rows)` of sliver `s`.
    #[inline]
    pub(crate) fn rows(self, s: usize) -> (usize, usize) {
        let SliverSplit { base, extra } = self;
        (s * base + s.min(extra), base + usize::from(s < extra))
    }
}

/// Packs sliver `s` of the `mc × kc` block of A at `a` (its rows given by
/// [`SliverSplit`]) into `out`, `kc × mr` (k-major), zero-padded to `mr`.
/// A block is packed sliver by sliver, so several threads can share the work.
///
/// With `steps`, the sliver's all-zero columns are dropped as by
/// [`drop_zero_columns`], which returns the count kept; where A's rows are
/// adjacent (`rsa = 1`, as in `xᵀ` for a row-major `x`) and the sliver is
/// full, in the same pass, each column tested as it is copied. Without,
/// returns `kc`.
///
/// # Safety
/// `a + i·rsa + p·csa` must be readable for the sliver's rows `i` and
/// `p < kc`, and `out.len()` must be `mr·kc`.
///
/// # Panics
/// As [`drop_zero_columns`], for `steps`.
pub(crate) unsafe fn pack_a_sliver<T: Element>(
    mr: usize,
    mc: usize,
    s: usize,
    a: *const T,
    [rsa, csa]: [isize; 2],
    out: &mut [T],
    steps: Option<&mut [u16]>,
) -> usize {
    let (i0, rows) = SliverSplit::new(mc, mr).rows(s);
    // SAFETY (each arm): rows i0..i0+rows of the block are readable for kc
    // columns (caller contract); full slivers read exactly those.
    unsafe {
        let a = a.offset(i0 as isize * rsa);
        let Some(steps) = steps else {
            pack_sliver(mr, rows, a, [rsa, csa], out);
            return out.len() / mr;
        };
        match (rsa, rows == mr, mr) {
            (1, true, 4) => pack_dropping_zeros::<T, 4>(a, csa, out, steps),
            (1, true, 6) => pack_dropping_zeros::<T, 6>(a, csa, out, steps),
            (1, true, 12) => pack_dropping_zeros::<T, 12>(a, csa, out, steps),
            _ => {
                pack_sliver(mr, rows, a, [rsa, csa], out);
                drop_zero_columns(mr, out, steps)
            }
        }
    }
}

/// The one-pass case of [`pack_a_sliver`] with zero columns dropped: column `p` is the
/// `MR` contiguous values at `a + p·csa`.
///
/// # Safety
/// `a + i + p·csa` is readable for `i < MR`, `p < out.len() / MR`.
unsafe fn pack_dropping_zeros<T: Element, const MR: usize>(
    a: *const T,
    csa: isize,
    out: &mut [T],
    steps: &mut [u16],
) -> usize {
    let (columns, _) = out.as_chunks_mut::<MR>();
    assert!(
        columns.len() <= steps.len() && columns.len() < 1 << 16,
        "pack_dropping_zeros: {} columns, {} step slots",
        columns.len(),
        steps.len()
    );
    let mut kept = 0;
    for p in 0..columns.len() {
        // SAFETY: MR readable values at a + p·csa (caller contract); unaligned read.
        let column = unsafe {
            a.offset(p as isize * csa)
                .cast::<[T; MR]>()
                .read_unaligned()
        };
        if column.iter().fold(false, |any, &v| any | (v != T::ZERO)) {
            columns[kept] = column;
            steps[kept] = p as u16;
            kept += 1;
        }
    }
    kept
}

/// Drops the all-zero columns of a packed A sliver (`kc` columns of `mr`
/// values, k-major): the other columns move to the front, in order, their k
/// indices go to `steps`, and their count is returned. A column is dropped
/// only if all its values compare equal to zero (NaN is kept).
///
/// With the list, a kernel skips the k steps that would add `0·B` (see
/// [`KSteps::Listed`](super::kernel::KSteps::Listed)): for a sparse A, such
/// as a batch of MNIST images (half the pixels are black in all of 12
/// images), that is half the work.
///
/// # Panics
/// If `sliver` is not `kc·mr` values with `kc ≤ steps.len()` and `kc < 2^16`.
pub(crate) fn drop_zero_columns<T: Element>(
    mr: usize,
    sliver: &mut [T],
    steps: &mut [u16],
) -> usize {
    let kc = sliver.len() / mr;
    assert!(
        sliver.len() == kc * mr && kc <= steps.len() && kc < 1 << 16,
        "drop_zero_columns: {} values for {mr}-wide columns, {} step slots",
        sliver.len(),
        steps.len()
    );
    match mr {
        4 => drop_zero_columns_of::<T, 4>(sliver, steps),
        6 => drop_zero_columns_of::<T, 6>(sliver, steps),
        12 => drop_zero_columns_of::<T, 12>(sliver, steps),
        _ => {
            let mut kept = 0;
            for p in 0..kc {
                if sliver[p * mr..][..mr].iter().any(|&v| v != T::ZERO) {
                    sliver.copy_within(p * mr..(p + 1) * mr, kept * mr);
                    steps[kept] = p as u16;
                    kept += 1;
                }
            }
            kept
        }
    }
}

/// [`drop_zero_columns`] for the kernels' sliver widths: the columns are
/// fixed-size arrays, so the zero test is a few vector compares and a kept
/// column moves in a few register copies (not a `memmove` call each).
fn drop_zero_columns_of<T: Element, const MR: usize>(sliver: &mut [T], steps: &mut [u16]) -> usize {
    let (columns, _) = sliver.as_chunks_mut::<MR>();
    let mut kept = 0;
    for p in 0..columns.len() {
        let column = columns[p];
        // Branch-free over the column: ±0 compare equal to zero, NaN does not.
        if column.iter().fold(false, |any, &v| any | (v != T::ZERO)) {
            columns[kept] = column;
            steps[kept] = p as u16;
            kept += 1;
        }
    }
    kept
}

/// Copies the rows of an A block that is contiguous along k, `kc` values
/// each, to `out` at row stride `stride` (`out.len()` is `rows · stride`).
/// The padding between rows is left as it is: kernels never read it.
///
/// # Safety
/// `a + i·rsa + p` must be readable for `i < out.len() / stride`, `p < kc`.
pub(crate) unsafe fn pack_a_rows<T: Element>(
    kc: usize,
    a: *const T,
    rsa: isize,
    stride: usize,
    out: &mut [T],
) {
    debug_assert!(kc <= stride && out.len().is_multiple_of(stride));
    for (i, row) in out.chunks_exact_mut(stride).enumerate() {
        // SAFETY: row i of the block holds kc contiguous readable values (caller contract).
        let src = unsafe { core::slice::from_raw_parts(a.offset(i as isize * rsa), kc) };
        row[..kc].copy_from_slice(src);
    }
}

/// Packs the `kc × nc` panel of B at `b` into `⌈nc/nr⌉` slivers of `kc × nr`,
/// on the current rayon pool when `parallel` is set.
///
/// # Safety
/// `b + p·rsb + j·csb` must be readable for `p < kc`, `j < nc` (from any
/// thread), and `out.len()` must be `⌈nc/nr⌉·nr·kc`.
pub(crate) unsafe fn pack_b_panel<T: Element>(
    nr: usize,
    nc: usize,
    b: *const T,
    [rsb, csb]: [isize; 2],
    out: &mut [T],
    parallel: bool,
) {
    if nc == 0 {
        return;
    }
    let kc = out.len() / nc.div_ceil(nr) / nr;
    let b = Shared(b);
    if csb == 1 {
        // Row-major B: walk each row once, left to right, dealing NR-wide
        // pieces out to the slivers. Going sliver by sliver instead would
        // fetch one cache line per row per sliver, a page apart for wide B.
        // One group per thread (each a long run of every row), or the whole
        // panel: sequential reads the prefetcher can follow.
        let slivers = nc.div_ceil(nr);
        let per_group = if parallel {
            slivers.div_ceil(rayon::current_num_threads()).max(1)
        } else {
            slivers
        };
        let group = per_group * nr * kc;
        let pack_group = |(g, out): (usize, &mut [T])| {
            let j0 = g * per_group * nr;
            // SAFETY: B[0..kc, j0..nc] is readable (caller contract), row-major.
            unsafe { pack_rows([nr, kc], nc - j0, b.get().add(j0), rsb, out) };
        };
        if parallel {
            out.par_chunks_mut(group).enumerate().for_each(pack_group);
        } else {
            out.chunks_mut(group).enumerate().for_each(pack_group);
        }
        return;
    }
    let pack = |(s, sliver): (usize, &mut [T])| {
        let j0 = s * nr;
        // SAFETY: columns j0..j0+valid of the panel are readable (caller
        // contract); a B sliver is an A sliver of Bᵀ, hence the swapped strides.
        unsafe {
            pack_sliver(
                nr,
                nr.min(nc - j0),
                b.get().offset(j0 as isize * csb),
                [csb, rsb],
                sliver,
            )
        };
    };
    if parallel {
        out.par_chunks_mut(nr * kc).enumerate().for_each(pack);
    } else {
        out.chunks_mut(nr * kc).enumerate().for_each(pack);
    }
}

/// Packs the `kc`-deep slivers in `out` from the row-major panel at `b` (row
/// stride `rsb`, `cols` valid columns), one source row at a time; a partial
/// last sliver is zeroed once and then gets its valid columns row by row.
///
/// The sliver width is made a constant for the kernels' widths: a copy of
/// a run-time length (which is what the compiler makes of a `match` whose
/// arms are all copies) becomes a `memcpy` call per 64 to 256 bytes, a
/// twelfth of a 128×1024×1024 product on Zen 4.
///
/// # Safety
/// `b + p·rsb + j` must be readable for `p < kc`, `j < min(cols, slivers·nr)`.
unsafe fn pack_rows<T: Element>(
    [nr, kc]: [usize; 2],
    cols: usize,
    b: *const T,
    rsb: isize,
    out: &mut [T],
) {
    // SAFETY: the caller's contract, passed on unchanged.
    unsafe {
        match nr {
            64 => pack_rows_of::<T, 64>([nr, kc], cols, b, rsb, out),
            32 => pack_rows_of::<T, 32>([nr, kc], cols, b, rsb, out),
            16 => pack_rows_of::<T, 16>([nr, kc], cols, b, rsb, out),
            8 => pack_rows_of::<T, 8>([nr, kc], cols, b, rsb, out),
            4 => pack_rows_of::<T, 4>([nr, kc], cols, b, rsb, out),
            _ => pack_rows_of::<T, 0>([nr, kc], cols, b, rsb, out),
        }
    }
}

/// [`pack_rows`] for slivers `NR` wide (`NR` = `nr`), or `nr` wide when
/// `NR` is 0 (widths not listed in [`pack_rows`]: NEON's 12 and 6).
///
/// # Safety
/// As [`pack_rows`].
#[inline(always)]
unsafe fn pack_rows_of<T: Element, const NR: usize>(
    [nr, kc]: [usize; 2],
    cols: usize,
    b: *const T,
    rsb: isize,
    out: &mut [T],
) {
    debug_assert!(NR == 0 || NR == nr);
    let nr = if NR == 0 { nr } else { NR };
    let slivers = out.len() / (nr * kc);
    let cols = cols.min(slivers * nr);
    let full = cols / nr;
    let (full_out, tail_out) = out.split_at_mut(full * nr * kc);
    for p in 0..kc {
        // SAFETY: row p holds `cols` ≥ full·nr readable values (caller contract).
        let row = unsafe { core::slice::from_raw_parts(b.offset(p as isize * rsb), full * nr) };
        for (s, piece) in row.chunks_exact(nr).enumerate() {
            let dst = &mut full_out[s * nr * kc + p * nr..][..nr];
            if NR == 0 {
                dst.copy_from_slice(piece);
            } else {
                copy_fixed::<T, NR>(dst, piece);
            }
        }
    }
    let valid = cols - full * nr;
    if valid > 0 {
        let tail = &mut tail_out[..nr * kc];
        tail.fill(T::ZERO);
        for (p, dst) in tail.chunks_exact_mut(nr).enumerate() {
            // SAFETY: row p holds `valid` readable values from column full·nr (caller contract).
            let src = unsafe {
                core::slice::from_raw_parts(b.offset(p as isize * rsb).add(full * nr), valid)
            };
            copy_short(&mut dst[..valid], src);
        }
    }
}

/// `dst = src` for slices of exactly `W` elements.
#[inline(always)]
fn copy_fixed<T: Element, const W: usize>(dst: &mut [T], src: &[T]) {
    *<&mut [T; W]>::try_from(dst).expect("W elements") =
        *<&[T; W]>::try_from(src).expect("W elements");
}

/// `dst = src` (equal lengths) as fixed-size moves of 16, 8, 4, 2 and 1
/// elements, for pieces too short to be worth a `memcpy` call.
#[inline(always)]
fn copy_short<T: Element>(dst: &mut [T], src: &[T]) {
    debug_assert_eq!(dst.len(), src.len());
    let n = dst.len();
    let mut at = 0;
    while n - at >= 16 {
        copy_fixed::<T, 16>(&mut dst[at..at + 16], &src[at..at + 16]);
        at += 16;
    }
    macro_rules! step {
        ($w:literal) => {
            if n - at >= $w {
                copy_fixed::<T, $w>(&mut dst[at..at + $w], &src[at..at + $w]);
                at += $w;
            }
        };
    }
    step!(8);
    step!(4);
    step!(2);
    if at < n {
        dst[at] = src[at];
    }
}

/// One cache line; pack buffers are vectors of these, so they are 64-byte aligned.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct CacheLine([u8; 64]);

type Pool = LocalKey<Cell<Vec<CacheLine>>>;

thread_local! {
    static A_POOL: Cell<Vec<CacheLine>> = const { Cell::new(Vec::new()) };
    static B_POOL: Cell<Vec<CacheLine>> = const { Cell::new(Vec::new()) };
    static STEPS_POOL: Cell<Vec<CacheLine>> = const { Cell::new(Vec::new()) };
}

/// A cache-line-aligned pack buffer borrowed from the current thread's pool
/// and returned to it on drop.
///
/// The buffer is taken out of the pool rather than borrowed, so a GEMM that
/// starts on this thread while another is in flight (rayon work stealing, or
/// a GEMM called from inside a parallel loop) simply allocates its own.
pub(crate) struct PackBuf {
    pool: &'static Pool,
    lines: Vec<CacheLine>,
}

impl PackBuf {
    /// The pool for blocks of A (one per worker thread).
    pub(crate) fn for_a() -> Self {
        Self::take(&A_POOL)
    }

    /// The pool for panels of B (one per calling thread).
    pub(crate) fn for_b() -> Self {
        Self::take(&B_POOL)
    }

    /// The pool for the step lists of A slivers with zero columns dropped.
    pub(crate) fn for_steps() -> Self {
        Self::take(&STEPS_POOL)
    }

    fn take(pool: &'static Pool) -> Self {
        PackBuf {
            pool,
            lines: pool.with(Cell::take),
        }
    }

    /// The first `len` elements of the buffer, growing it if needed.
    pub(crate) fn slice<T: Pod>(&mut self, len: usize) -> &mut [T] {
        let lines = (len * size_of::<T>()).div_ceil(size_of::<CacheLine>());
        if self.lines.len() < lines {
            self.lines.resize(lines, CacheLine::zeroed());
        }
        &mut bytemuck::cast_slice_mut(&mut self.lines[..lines])[..len]
    }
}

impl Drop for PackBuf {
    fn drop(&mut self) {
        let lines = std::mem::take(&mut self.lines);
        // Keep the larger of the returned buffer and whatever a nested call left behind.
        let _ = self.pool.try_with(|pool| {
            let other = pool.take();
            pool.set(if other.len() > lines.len() {
                other
            } else {
                lines
            });
        });
    }
}
