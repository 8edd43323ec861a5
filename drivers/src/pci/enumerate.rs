//! Bus enumeration (PCI Local Bus Specification 3.0, §6.2.1 for the
//! multi-function bit; PCI-to-PCI Bridge Architecture Specification 1.2,
//! §3.2.5 for bus numbers): every device on bus 0, function 0 first and
//! functions 1-7 only when function 0 says multi-function (single-function
//! devices may answer on every function number), then the secondary bus of
//! each bridge. Bus numbers come from firmware and are checked: a bus is
//! scanned at most once, so a bridge pointing back never loops.

use super::{ConfigSpace, HeaderKind, PciAddress, PciError, PciFunction};
use alloc::vec;
use alloc::vec::Vec;

/// Every function reachable from bus 0, sorted by address.
pub fn enumerate<C: ConfigSpace + ?Sized>(cfg: &C) -> Vec<PciFunction> {
    let mut functions = Vec::new();
    let mut scanned = [false; 256];
    scanned[0] = true;
    let mut pending = vec![0u8];
    while let Some(bus) = pending.pop() {
        for device in 0..32 {
            let Some(first) = PciFunction::read(cfg, PciAddress::new(bus, device, 0)) else {
                continue;
            };
            let functions_here = if first.header.multifunction { 8 } else { 1 };
            functions.push(first);
            for function in 1..functions_here {
                if let Some(found) = PciFunction::read(cfg, PciAddress::new(bus, device, function))
                {
                    functions.push(found);
                }
            }
        }
        // Bridges found on this bus (the ones just pushed).
        for function in functions.iter_mut().filter(|f| f.address.bus == bus) {
            if let Some(secondary) = follow_bridge(function, &mut scanned) {
                pending.push(secondary);
            }
        }
    }
    functions.sort_by_key(|function| function.address);
    functions
}

/// The bus behind `function` if it is a bridge to a bus not yet scanned;
/// a bogus bus number is recorded on the bridge.
fn follow_bridge(function: &mut PciFunction, scanned: &mut [bool; 256]) -> Option<u8> {
    let HeaderKind::Bridge {
        secondary_bus,
        subordinate_bus,
        ..
    } = function.header.kind
    else {
        return None;
    };
    let error = if subordinate_bus < secondary_bus {
        PciError::BusRange {
            secondary: secondary_bus,
            subordinate: subordinate_bus,
        }
    } else if scanned[usize::from(secondary_bus)] {
        PciError::BusAlreadyScanned {
            secondary: secondary_bus,
        }
    } else {
        scanned[usize::from(secondary_bus)] = true;
        return Some(secondary_bus);
    };
    function.errors.push(error);
    None
}
