//! Reading the kernel's dump (the `@mmu` lines of its serial output).

use super::{hex, Dump, Outcome, Probe};
use crate::qemu;
use anyhow::{bail, Context, Result};
use highpte_machine::mmu::Access;

/// Read the dump of one boot.
pub(super) fn parse(run: &qemu::QemuRun) -> Result<Dump> {
    let mut d = Dump {
        pae: false,
        cr3: u64::MAX,
        entries: Vec::new(),
        pages: Vec::new(),
        probes: Vec::new(),
        fin: Vec::new(),
        pdpt_fin: Vec::new(),
        end: String::new(),
    };
    for line in run.tagged("mmu") {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("cfg") => {
                for kv in w {
                    match kv.split_once('=') {
                        Some(("mode", m)) => d.pae = m == "pae",
                        Some(("cr3", v)) => d.cr3 = hex(v)?,
                        Some(("wp", v)) | Some(("pse", v)) if v != "1" => {
                            bail!("unexpected {kv}")
                        }
                        Some(("nxe", v)) if v != "0" => {
                            bail!("unexpected {kv}")
                        }
                        _ => {}
                    }
                }
            }
            Some("pg") => {
                let pa = hex(w.next().context("pg without address")?)?;
                if d.pages.last() != Some(&pa) {
                    d.pages.push(pa);
                }
                let esz = if d.pae { 8 } else { 4 };
                for iv in w {
                    let (i, v) = iv.split_once('=').context("pg entry")?;
                    d.entries.push((pa + esz * hex(i)?, hex(v)?));
                }
            }
            Some("p") => {
                let f: Vec<&str> = w.collect();
                if f.len() != 6 {
                    bail!("bad probe line {line:?}");
                }
                let outcome = if let Some(code) = f[4].strip_prefix('f') {
                    let va = hex(f[1])? as u32;
                    match code.split_once('@') {
                        Some((c, cr2)) => Outcome::Fault(hex(c)? as u32, hex(cr2)? as u32),
                        None => Outcome::Fault(hex(code)? as u32, va),
                    }
                } else if let Some(v) = f[4].strip_prefix('?') {
                    Outcome::Unknown(hex(v)?)
                } else {
                    Outcome::Phys(hex(f[4])?)
                };
                d.probes.push(Probe {
                    n: f[0].parse()?,
                    va: hex(f[1])? as u32,
                    access: match f[2] {
                        "l" => Access::Read,
                        "s" => Access::Write,
                        "x" => Access::Fetch,
                        k => bail!("bad probe kind {k:?}"),
                    },
                    user: f[3] == "3",
                    outcome,
                    ad: hex(f[5])? as u8,
                });
            }
            Some("fin") => {
                let pa = hex(w.next().context("fin")?)?;
                d.fin.push((pa, hex(w.next().context("fin")?)?));
            }
            Some("pdpt-fin") => d.pdpt_fin = w.map(hex).collect::<Result<_>>()?,
            Some("end") => d.end = line.to_owned(),
            _ => bail!("unexpected line @mmu {line}"),
        }
    }
    if d.cr3 == u64::MAX || d.end.is_empty() {
        bail!("the kernel's dump is incomplete (no cfg or end line)");
    }
    Ok(d)
}
