//! Building the bare-metal image and booting it under QEMU.
//!
//! The image is built by Debian's Rust (`rustc-web`, with the library sources of
//! `rust-web-src` for `-Z build-std`), because the machine's rustup toolchain cannot fetch a
//! bare-metal standard library; `scripts/install-qemu-deps` installs it and QEMU. It boots in
//! `qemu-system-x86_64` with a 32-bit CPU model (`qemu32` plus PAE and PSE-36): QEMU 7.2's
//! `qemu-system-i386` truncates the physical address of a page table above 4 GB during its
//! page walk (its physical-address TLB is indexed by a 32-bit `target_ulong`), so a PAE pte
//! page in high memory above 4 GB reads as the wrong frame there; the x86_64 binary emulates
//! the same 32-bit CPU without that limit.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The QEMU binary (see the module docs for why the x86_64 one).
pub const QEMU: &str = "qemu-system-x86_64";
/// The CPU model: a 32-bit CPU with PAE and PSE-36 (36-bit physical addresses).
pub const CPU: &str = "qemu32,+pae,+pse36";
/// QEMU's exit status for the kernel's pass code (`isa-debug-exit`: (0x10 << 1) | 1).
pub const EXIT_PASS: i32 = 33;
/// QEMU's exit status for the kernel's fail code.
pub const EXIT_FAIL: i32 = 35;

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library/core";

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/xtask sits two levels below the root")
        .to_path_buf()
}

/// Fail with what to install if the Debian toolchain or QEMU is missing.
pub fn check_tools() -> Result<()> {
    let mut missing = Vec::new();
    if !Path::new(DEBIAN_RUSTC).exists() || !Path::new(DEBIAN_CARGO).exists() {
        missing.push("Debian's rustc and cargo (packages rustc-web, cargo-web)");
    }
    if !Path::new(RUST_SRC).exists() {
        missing.push("the Rust library sources for -Z build-std (package rust-web-src)");
    }
    if Command::new(QEMU).arg("--version").output().is_err() {
        missing.push("QEMU (package qemu-system-x86)");
    }
    if !missing.is_empty() {
        bail!(
            "the bare-metal build needs {}: run `scripts/install-qemu-deps` (apt-get install --no-install-recommends rustc-web cargo-web rust-web-src qemu-system-x86)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Build the bare-metal kernel (release) and return the ELF's path.
pub fn build_image(quiet: bool) -> Result<PathBuf> {
    check_tools()?;
    let dir = workspace_root().join("crates/baremetal");
    let target_dir = dir.join("target");
    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.current_dir(&dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .args([
            "build",
            "--release",
            "--ignore-rust-version",
            "--target-dir",
        ])
        .arg(&target_dir);
    for keep in ["HOME", "CARGO_HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    if quiet {
        cmd.arg("--quiet");
    }
    let out = cmd
        .stdout(Stdio::inherit())
        .stderr(if quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .output()
        .context("running Debian's cargo for the bare-metal build")?;
    if !out.status.success() {
        bail!(
            "the bare-metal build failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(target_dir.join("i686-highpte/release/highpte-baremetal"))
}

/// What a boot printed and how it ended.
pub struct QemuRun {
    /// QEMU's exit status (33: the kernel passed, 35: it failed; anything else: it never
    /// reported, e.g. a triple fault with `-no-reboot` exits 0).
    pub status: i32,
    /// The serial output, line by line.
    pub lines: Vec<String>,
    /// Wall time of the boot.
    pub seconds: f64,
}

impl QemuRun {
    /// True if the kernel reported a pass.
    pub fn passed(&self) -> bool {
        self.status == EXIT_PASS
    }
    /// The lines that start with `@tag `, without the tag.
    pub fn tagged<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines
            .iter()
            .filter_map(move |l| l.strip_prefix('@')?.strip_prefix(tag)?.strip_prefix(' '))
    }
    /// The lines that are not `@` report lines.
    pub fn readable(&self) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with('@'))
    }
    /// Why the run did not pass, for an error message.
    pub fn failure(&self) -> String {
        match self.status {
            EXIT_PASS => "passed".into(),
            EXIT_FAIL => "the kernel reported a failure".into(),
            s => format!("QEMU exited with status {s} without the kernel's report (a triple fault or a hang)"),
        }
    }
}

/// Boot `image` with `ram` bytes and the command line `append`; kill it after `timeout`.
pub fn boot(image: &Path, ram: u64, append: &str, timeout: Duration) -> Result<QemuRun> {
    let t0 = Instant::now();
    let mut child = Command::new(QEMU)
        .args(["-machine", "pc", "-cpu", CPU, "-m"])
        .arg(format!("{}M", ram >> 20))
        .arg("-kernel")
        .arg(image)
        .args(["-append", append])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {QEMU}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let out = reader.join().unwrap_or_default();
            bail!(
                "QEMU did not finish within {} s; its serial output:\n{}",
                timeout.as_secs(),
                String::from_utf8_lossy(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().unwrap_or_default();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let text = String::from_utf8_lossy(&out).replace('\r', "");
    let code = status.code().unwrap_or(-1);
    if code != EXIT_PASS && code != EXIT_FAIL && !err.trim().is_empty() {
        bail!("{QEMU} failed ({status}): {}", err.trim());
    }
    Ok(QemuRun {
        status: code,
        lines: text.lines().map(str::to_owned).collect(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}
