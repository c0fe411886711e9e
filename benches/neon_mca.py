#!/usr/bin/env python3
"""Static throughput of the NEON GEMM kernel's k loop, with llvm-mca.

Builds the library for aarch64 as assembly, finds the steady-state k loops
of the full 8x12 f32 and 8x6 f64 tiles (the self-loops with 24 `fmla` by
element) and of the portable one-row f32 kernel (16 scalar `fmul` + 16
`fadd`), and runs llvm-mca on each for several core models next to a loop
of 24 independent FMAs (the model's FMA-pipe throughput). Prints cycles per
iteration and the share of FMA throughput the kernel loop reaches.

    python3 benches/neon_mca.py            # needs the aarch64 target and llvm-mca
    LLVM_MCA=llvm-mca-19 python3 benches/neon_mca.py
"""
import glob, os, re, shutil, subprocess, sys, tempfile

MCA = os.environ.get("LLVM_MCA") or shutil.which("llvm-mca-19") or shutil.which("llvm-mca")
CPUS = ["neoverse-n1", "neoverse-v1", "neoverse-v2", "apple-m1"]
TARGET_DIR = os.path.join(tempfile.gettempdir(), "densekit-neon-asm")
ITERATIONS = 1000


def build():
    subprocess.run(
        ["cargo", "rustc", "--release", "--lib", "--target", "aarch64-unknown-linux-gnu",
         "--", "--emit", "asm", "-C", "codegen-units=1"],
        check=True, env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR})
    files = glob.glob(f"{TARGET_DIR}/aarch64-unknown-linux-gnu/release/deps/densekit-*.s")
    return max(files, key=os.path.getmtime)


def self_loops(asm):
    """(function, body) for every basic block that branches back to itself."""
    func, label, body = None, None, []
    for line in open(asm):
        if m := re.match(r"^(_ZN\S+):", line):
            func, label = m.group(1), None
        elif m := re.match(r"^(\.LBB\S+):", line):
            label, body = m.group(1), []
        elif label and line.startswith("\t") and not line.startswith("\t."):
            body.append(line.rstrip("\n"))
            if re.match(r"^\tb\.\S+\t" + re.escape(label) + "$", line):
                yield func, body
                label = None


def count(body, pattern):
    return sum(1 for l in body if re.search(pattern, l))


def pick(loops, func_part, want):
    for func, body in loops:
        if func and func_part in func and want(body):
            return body
    sys.exit(f"no loop found in {func_part}")


def cycles(lines, cpu):
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    out = subprocess.run([MCA, "-mtriple=aarch64", f"-mcpu={cpu}", f"-iterations={ITERATIONS}", f.name],
                         check=True, capture_output=True, text=True).stdout
    os.unlink(f.name)
    return int(re.search(r"Total Cycles:\s+(\d+)", out).group(1)) / ITERATIONS


def main():
    if not MCA:
        sys.exit("llvm-mca not found (Debian: apt-get install llvm-19)")
    loops = list(self_loops(build()))
    by_lane = lambda suffix: lambda b: count(b, rf"fmla\tv\d+\.{suffix}, v\d+\.{suffix}, v\d+\.\w\[") == 24 and count(b, r"ldrh") == 0
    kernels = {
        "NEON 8x12 f32": (pick(loops, "kernel4neon4tile", by_lane("4s")), 24 * 8),
        "NEON 8x6 f64": (pick(loops, "kernel4neon4tile", by_lane("2d")), 24 * 4),
        "portable 1x16 f32": (pick(loops, "kernel6scalar4tile",
                                   lambda b: count(b, r"fmul\ts") == 16 and count(b, r"fadd\ts") == 16), 32),
    }
    fma = {s: [f"\tfmla\tv{i}.{s}, v26.{s}, v27.{s[-1]}[0]" for i in range(24)] for s in ("4s", "2d")}
    print(f"llvm-mca: {MCA}; cycles per k step ({ITERATIONS} iterations)\n")
    print("| kernel loop | flops/step | " + " | ".join(CPUS) + " |")
    print("|---|---|" + "---|" * len(CPUS))
    for name, (body, flops) in kernels.items():
        cells = []
        for cpu in CPUS:
            c = cycles(body, cpu)
            if "NEON" in name:
                peak = cycles(fma["4s" if "f32" in name else "2d"], cpu)
                cells.append(f"{c:.2f} ({peak / c:.0%} of FMA)")
            else:
                cells.append(f"{c:.2f} ({flops / c:.1f} flop/cycle)")
        print(f"| {name} | {flops} | " + " | ".join(cells) + " |")
    print("\nFMA-only loop (24 independent fmla):",
          ", ".join(f"{cpu} {cycles(fma['4s'], cpu):.2f} (f32) / {cycles(fma['2d'], cpu):.2f} (f64)" for cpu in CPUS))


if __name__ == "__main__":
    main()
