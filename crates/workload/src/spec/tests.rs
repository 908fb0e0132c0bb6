//! Unit tests of the value parsers, ramps and configuration hints.

use super::validate::suggest_variant;
use super::values::parse_signed_size;
use super::*;

#[test]
fn sizes_parse_and_print() {
    assert_eq!("512M".parse::<Size>().unwrap(), Size(512 * MB));
    assert_eq!(Size(512 * MB).to_string(), "512M");
    assert_eq!(parse_signed_size("-512K"), Some(-512 * 1024));
    assert_eq!(parse_signed_size("+1M"), Some(1 << 20));
    assert_eq!(parse_signed_size("--1M"), None);
    assert_eq!(parse_signed_size("-"), None);
    assert_eq!(SignedSize(-512 * 1024).to_string(), "-512K");
    assert_eq!(parse_signed_size("-8589934592G"), Some(i64::MIN));
    assert_eq!(parse_signed_size("-8589934593G"), None);
    assert_eq!(parse_signed_size("8589934592G"), None);
}

#[test]
fn prot_parses_letters() {
    assert_eq!("rw".parse::<Prot>(), Ok(Prot::RW));
    assert_eq!("wr".parse::<Prot>(), Ok(Prot::RW));
    assert_eq!("none".parse::<Prot>(), Ok(Prot::NONE));
    assert_eq!("rr".parse::<Prot>(), Err(()));
    assert_eq!("".parse::<Prot>(), Err(()));
    assert_eq!("q".parse::<Prot>(), Err(()));
    assert_eq!(
        Prot {
            read: true,
            write: false,
            exec: true
        }
        .to_string(),
        "rx"
    );
}

#[test]
fn ramp_steps() {
    let p = ProcessSpec {
        count: 250,
        ramp: Some(Ramp {
            start: 100,
            step: 100,
        }),
    };
    assert_eq!(p.steps(), vec![100, 200, 250]);
    let p = ProcessSpec {
        count: 7,
        ramp: None,
    };
    assert_eq!(p.steps(), vec![7]);
    let p = ProcessSpec {
        count: 7,
        ramp: Some(Ramp { start: 7, step: 0 }),
    };
    assert!(p.steps().is_empty());
}

#[test]
fn suggests_a_variant_that_addresses_the_ram() {
    assert_eq!(
        suggest_variant(8 * GB),
        "config \"64g\" or \"64g-highpte\" can address 8G; or lower ram"
    );
    assert_eq!(
        suggest_variant(2 * GB),
        "config \"4g\" or \"4g-highpte\" or \"64g\" or \"64g-highpte\" can address 2G; or lower ram"
    );
}

#[test]
fn machine_names_become_kernel_enums_and_print_back() {
    let m: MachineSpec = toml::from_str(
        "config = \"4g\"\nstrategy = \"persistent\"\npt_alloc = \"quicklist\"\nreclaim = \"rmap\"",
    )
    .unwrap();
    assert_eq!(m.config, MemoryVariant::Highmem4g);
    assert_eq!(m.strategy, Some(PteStrategy::Persistent));
    assert_eq!(m.pt_alloc, Some(PtAllocKind::Quicklist));
    assert_eq!(m.reclaim, Some(ReclaimKind::Rmap));
    assert_eq!(m.unknown, UnknownNames::default());
    let text = toml::to_string(&m).unwrap();
    assert!(text.contains("config = \"4g\"\n"), "{text}");
    assert!(text.contains("strategy = \"persistent\"\n"), "{text}");
    assert!(text.contains("pt_alloc = \"quicklist\"\n"), "{text}");
    assert!(text.contains("reclaim = \"rmap\"\n"), "{text}");
    assert_eq!(toml::from_str::<MachineSpec>(&text).unwrap(), m);
}

#[test]
fn unknown_machine_names_wait_for_validation() {
    let m: MachineSpec = toml::from_str("config = \"8g\"\nreclaim = \"lru\"").unwrap();
    assert_eq!(m.unknown.config.as_deref(), Some("8g"));
    assert_eq!(m.unknown.reclaim.as_deref(), Some("lru"));
    assert_eq!(m.unknown.strategy, None);
    assert_eq!(m.reclaim, None);
}
