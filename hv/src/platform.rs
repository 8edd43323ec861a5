//! Which platform the kernel runs on, from the CPUID hypervisor leaves.
//!
//! CPUID.1:ECX[31] says "a hypervisor is present"; leaf 0x40000000 then
//! returns the largest hypervisor leaf in EAX and a 12-byte signature in
//! EBX, ECX, EDX. Xen may sit at 0x40000000 or, when it also offers a
//! Viridian (Hyper-V) interface, 0x100 leaves higher: it is searched in
//! steps of 0x100 (`xen/include/public/arch-x86/cpuid.h`,
//! `XEN_CPUID_FIRST_LEAF`, `XEN_CPUID_SIGNATURE_*`). KVM's features are in
//! leaf base+1 EAX (Linux `Documentation/virt/kvm/x86/cpuid.rst`).
//!
//! Detection is a pure function of a CPUID reader, so every platform is
//! host-tested with made-up leaves.

use core::fmt;

/// A CPUID leaf's registers: EAX, EBX, ECX, EDX.
pub type CpuidLeaf = [u32; 4];

/// The first hypervisor leaf.
pub const HYPERVISOR_BASE: u32 = 0x4000_0000;
/// Xen's leaves may start at any multiple of 0x100 up to this.
const XEN_SEARCH_END: u32 = 0x4001_0000;

/// KVM feature bits (leaf base+1, EAX).
pub mod kvm_feature {
    pub const CLOCKSOURCE: u32 = 1 << 0;
    pub const CLOCKSOURCE2: u32 = 1 << 3;
    pub const STEAL_TIME: u32 = 1 << 5;
    pub const PV_EOI: u32 = 1 << 6;
    pub const CLOCKSOURCE_STABLE_BIT: u32 = 1 << 24;
}

/// The platform, as far as CPUID tells. Xen PV versus PVH is decided by the
/// entry path, not here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// No hypervisor bit: real hardware (or a hypervisor hiding itself).
    BareMetal,
    /// `KVMKVMKVM`, with the feature bits of leaf base+1.
    Kvm { base: u32, features: u32 },
    /// `XenVMMXenVMM` at `base`; `version` from leaf base+1 (major, minor).
    Xen { base: u32, version: (u16, u16) },
    /// `VMwareVMware`.
    Vmware,
    /// `Microsoft Hv` (and no Xen leaves above it).
    HyperV,
    /// QEMU's TCG emulator (`TCGTCGTCGTCG`): no paravirtual interface.
    QemuTcg,
    /// A hypervisor with a signature we do not know, or none readable.
    Other { signature: [u8; 12] },
    /// A VMI option ROM (`vmi`) was found and bound, whatever CPUID says:
    /// the hypervisor's interface is the ROM's.
    Vmi { major: u8, minor: u8 },
}

impl Platform {
    /// A short name for the boot log and banner.
    pub fn name(&self) -> &'static str {
        match self {
            Platform::BareMetal => "hardware",
            Platform::Kvm { .. } => "kvm",
            Platform::Xen { .. } => "xen",
            Platform::Vmware => "vmware",
            Platform::HyperV => "hyper-v",
            Platform::QemuTcg => "qemu-tcg",
            Platform::Other { .. } => "unknown-hypervisor",
            Platform::Vmi { .. } => "vmi",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Platform::Kvm { features, .. } => write!(f, "kvm (features {features:#x})"),
            Platform::Xen { base, version } => {
                write!(f, "xen {}.{} (leaves at {base:#x})", version.0, version.1)
            }
            Platform::Other { signature } => {
                f.write_str("unknown hypervisor \"")?;
                for &b in signature {
                    let c = if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '.'
                    };
                    write!(f, "{c}")?;
                }
                f.write_str("\"")
            }
            Platform::Vmi { major, minor } => write!(f, "vmi ROM, API {major}.{minor}"),
            other => f.write_str(other.name()),
        }
    }
}

fn signature(leaf: CpuidLeaf) -> [u8; 12] {
    let mut bytes = [0u8; 12];
    bytes[0..4].copy_from_slice(&leaf[1].to_le_bytes());
    bytes[4..8].copy_from_slice(&leaf[2].to_le_bytes());
    bytes[8..12].copy_from_slice(&leaf[3].to_le_bytes());
    bytes
}

/// Detects the platform. `cpuid(leaf)` returns the registers of a leaf
/// (subleaf 0).
pub fn detect(cpuid: impl Fn(u32) -> CpuidLeaf) -> Platform {
    if cpuid(1)[2] & (1 << 31) == 0 {
        return Platform::BareMetal;
    }
    // Xen first: with Viridian enabled, 0x40000000 says Hyper-V and Xen's
    // own leaves follow at 0x40000100.
    let mut base = HYPERVISOR_BASE;
    while base < XEN_SEARCH_END {
        let leaf = cpuid(base);
        if &signature(leaf) == b"XenVMMXenVMM" && leaf[0] >= base + 2 {
            let version = cpuid(base + 1)[0];
            return Platform::Xen {
                base,
                version: ((version >> 16) as u16, version as u16),
            };
        }
        base += 0x100;
    }
    let leaf = cpuid(HYPERVISOR_BASE);
    match &signature(leaf) {
        b"KVMKVMKVM\0\0\0" => Platform::Kvm {
            base: HYPERVISOR_BASE,
            // A hypervisor that reports no leaf above the signature has no
            // feature leaf to read.
            features: if leaf[0] == 0 || leaf[0] > HYPERVISOR_BASE {
                cpuid(HYPERVISOR_BASE + 1)[0]
            } else {
                0
            },
        },
        b"VMwareVMware" => Platform::Vmware,
        b"Microsoft Hv" => Platform::HyperV,
        b"TCGTCGTCGTCG" => Platform::QemuTcg,
        other => Platform::Other { signature: *other },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn regs(sig: &[u8; 12], eax: u32) -> CpuidLeaf {
        let word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        [eax, word(0), word(4), word(8)]
    }

    fn machine(leaves: &[(u32, CpuidLeaf)], hypervisor_bit: bool) -> impl Fn(u32) -> CpuidLeaf {
        let mut map: HashMap<u32, CpuidLeaf> = leaves.iter().copied().collect();
        map.insert(1, [0, 0, if hypervisor_bit { 1 << 31 } else { 0 }, 0]);
        move |leaf| map.get(&leaf).copied().unwrap_or([0; 4])
    }

    #[test]
    fn no_hypervisor_bit_is_bare_metal() {
        let cpu = machine(
            &[(HYPERVISOR_BASE, regs(b"KVMKVMKVM\0\0\0", 0x4000_0001))],
            false,
        );
        assert_eq!(detect(cpu), Platform::BareMetal);
    }

    #[test]
    fn kvm_with_features() {
        let cpu = machine(
            &[
                (HYPERVISOR_BASE, regs(b"KVMKVMKVM\0\0\0", 0x4000_0001)),
                (
                    HYPERVISOR_BASE + 1,
                    [kvm_feature::CLOCKSOURCE2 | kvm_feature::PV_EOI, 0, 0, 0],
                ),
            ],
            true,
        );
        let platform = detect(cpu);
        assert_eq!(
            platform,
            Platform::Kvm {
                base: HYPERVISOR_BASE,
                features: kvm_feature::CLOCKSOURCE2 | kvm_feature::PV_EOI
            }
        );
        assert_eq!(platform.name(), "kvm");
    }

    #[test]
    fn old_kvm_reporting_max_leaf_zero_still_has_features() {
        let cpu = machine(
            &[
                (HYPERVISOR_BASE, regs(b"KVMKVMKVM\0\0\0", 0)),
                (HYPERVISOR_BASE + 1, [kvm_feature::CLOCKSOURCE, 0, 0, 0]),
            ],
            true,
        );
        assert!(matches!(detect(cpu), Platform::Kvm { features: 1, .. }));
    }

    #[test]
    fn xen_at_the_base_and_behind_viridian() {
        let xen = |base| {
            machine(
                &[
                    (HYPERVISOR_BASE, regs(b"Microsoft Hv", 0x4000_0005)),
                    (base, regs(b"XenVMMXenVMM", base + 5)),
                    (base + 1, [4 << 16 | 17, 0, 0, 0]),
                ],
                true,
            )
        };
        assert_eq!(
            detect(xen(HYPERVISOR_BASE)),
            Platform::Xen {
                base: HYPERVISOR_BASE,
                version: (4, 17)
            }
        );
        assert_eq!(
            detect(xen(0x4000_0100)),
            Platform::Xen {
                base: 0x4000_0100,
                version: (4, 17)
            }
        );
    }

    #[test]
    fn other_signatures() {
        let with = |sig: &[u8; 12]| machine(&[(HYPERVISOR_BASE, regs(sig, 0x4000_0001))], true);
        assert_eq!(detect(with(b"VMwareVMware")), Platform::Vmware);
        assert_eq!(detect(with(b"Microsoft Hv")), Platform::HyperV);
        assert_eq!(detect(with(b"TCGTCGTCGTCG")), Platform::QemuTcg);
        let other = detect(with(b"bhyve bhyve "));
        assert_eq!(
            other,
            Platform::Other {
                signature: *b"bhyve bhyve "
            }
        );
        assert_eq!(
            std::format!("{other}"),
            "unknown hypervisor \"bhyve bhyve \""
        );
        // Hypervisor bit set but nothing at the leaf (hidden signature).
        assert_eq!(
            detect(machine(&[], true)),
            Platform::Other { signature: [0; 12] }
        );
        assert_eq!(
            std::format!("{}", Platform::Other { signature: [0; 12] }),
            "unknown hypervisor \"............\""
        );
    }
}
