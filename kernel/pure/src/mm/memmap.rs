//! The physical memory map: the boot path feeds in what the firmware or boot
//! loader reported, this module turns it into sorted, disjoint regions and
//! carves the kernel's own reservations (kernel image, modules, boot data,
//! the frame bitmap) out of usable RAM before the frame allocator is built.
//!
//! Sources for the region types: E820 / ACPI spec "Address Range Types"
//! (ACPI 6.5 section 15.1, table 15.1), as relayed by the Multiboot2 memory
//! map tag (Multiboot2 spec section 3.6.8) and PVH's memory map
//! (xen/include/public/hvm/start_info.h, `hvm_memmap_table_entry`).
//!
//! Nothing here allocates: it runs before the heap exists, so storage is a
//! fixed array. Anything the map does not list is treated as not RAM, which
//! is why every fallback below that has to drop information drops it in the
//! direction of "not usable".

use core::fmt;

/// The page size (x86_64's 4 KiB page, Intel SDM vol. 3A section 4.5):
/// the granularity of everything the frame allocator hands out, and the
/// kernel's one definition of a page (`crate::mm::PAGE_SIZE` there).
pub const PAGE_SIZE: u64 = 4096;

/// x86_64 physical addresses are at most 52 bits wide (Intel SDM vol. 3A
/// section 4.1.4, MAXPHYADDR); an entry beyond that is firmware garbage.
pub const MAX_PHYS: u64 = 1 << 52;

/// How many entries the firmware may hand us. Real maps have a few dozen.
pub const MAX_REGIONS: usize = 128;

/// Resolving overlaps can cut one entry into three (a reserved hole inside
/// a usable range), so `n` raw entries resolve to at most `2n - 1` regions.
/// Room for twice [`MAX_REGIONS`] means `normalise` never has to drop one.
const CAPACITY: usize = 2 * MAX_REGIONS;

/// What a range of physical addresses is, from the kernel's point of view.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RegionKind {
    /// RAM the kernel may allocate from (E820 type 1).
    Usable,
    /// Firmware-owned, never touched (E820 type 2 and unknown types).
    Reserved,
    /// ACPI tables; reusable once parsed (E820 type 3).
    AcpiReclaimable,
    /// ACPI non-volatile storage, preserved across sleep (E820 type 4).
    AcpiNvs,
    /// Faulty RAM (E820 type 5, "unusable").
    Defective,
    /// The kernel image, as loaded.
    Kernel,
    /// A boot module (initial ramdisk, application image...).
    Module,
    /// Boot information structures still to be read (Multiboot2 info,
    /// PVH start_info, the command line...).
    BootData,
    /// The frame allocator's own bitmap.
    FrameBitmap,
}

impl RegionKind {
    /// Where ranges overlap, the kind with the higher value wins the
    /// overlapped part. Our reservations rank just above `Usable` because
    /// they are carved out of usable RAM only: whatever the firmware claims
    /// stays the firmware's. Among firmware kinds, `Reserved` beats
    /// `AcpiReclaimable` so that memory the firmware also calls reserved is
    /// never reclaimed; `AcpiNvs` beats `Reserved` so that it stays
    /// identifiable for sleep support; defective RAM beats everything.
    /// Our own kinds are ranked among themselves only so that the result is
    /// deterministic; `reserve` never lets them overlap.
    pub const fn restrictiveness(self) -> u8 {
        match self {
            RegionKind::Usable => 0,
            RegionKind::BootData => 1,
            RegionKind::Module => 2,
            RegionKind::Kernel => 3,
            RegionKind::FrameBitmap => 4,
            RegionKind::AcpiReclaimable => 5,
            RegionKind::Reserved => 6,
            RegionKind::AcpiNvs => 7,
            RegionKind::Defective => 8,
        }
    }

    /// True for the kinds the kernel reserves itself with [`MemoryMap::reserve`].
    pub const fn is_reservation(self) -> bool {
        matches!(
            self,
            RegionKind::Kernel
                | RegionKind::Module
                | RegionKind::BootData
                | RegionKind::FrameBitmap
        )
    }

    /// Lower-case name for log messages.
    pub const fn name(self) -> &'static str {
        match self {
            RegionKind::Usable => "usable",
            RegionKind::Reserved => "reserved",
            RegionKind::AcpiReclaimable => "ACPI reclaimable",
            RegionKind::AcpiNvs => "ACPI NVS",
            RegionKind::Defective => "defective",
            RegionKind::Kernel => "kernel",
            RegionKind::Module => "module",
            RegionKind::BootData => "boot data",
            RegionKind::FrameBitmap => "frame bitmap",
        }
    }
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A range of physical addresses, `end` exclusive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: RegionKind,
}

impl Region {
    /// Size in bytes; an inverted region counts as empty rather than
    /// wrapping around.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn overlap_with(&self, start: u64, end: u64) -> u64 {
        end.min(self.end).saturating_sub(start.max(self.start))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{:#x}, {:#x})", self.kind, self.start, self.end)
    }
}

/// Why an entry or a reservation was refused. The map is unchanged in
/// every case; the caller logs the error and carries on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// A firmware entry of length zero.
    ZeroLength { start: u64 },
    /// `start + len` does not fit in 64 bits.
    Overflow { start: u64, len: u64 },
    /// The range ends beyond [`MAX_PHYS`].
    AbovePhysLimit { start: u64, end: u64 },
    /// No room left in the table.
    TableFull,
    /// A reservation with `start >= end`.
    EmptyRange { start: u64, end: u64 },
    /// `reserve` was asked for a kind that is not one of ours.
    NotAReservationKind { kind: RegionKind },
    /// A reservation overlaps an earlier one, e.g. a module loaded over
    /// the kernel. `requested` is the range as asked for, `existing` the
    /// page-rounded region already in the map.
    Overlap { requested: Region, existing: Region },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::ZeroLength { start } => {
                write!(f, "memory map entry at {start:#x} has length zero")
            }
            MapError::Overflow { start, len } => write!(
                f,
                "memory map entry at {start:#x} with length {len:#x} wraps past the end of the address space"
            ),
            MapError::AbovePhysLimit { start, end } => write!(
                f,
                "range [{start:#x}, {end:#x}) reaches beyond the 52-bit physical address limit"
            ),
            MapError::TableFull => write!(f, "memory map is full ({MAX_REGIONS} entries)"),
            MapError::EmptyRange { start, end } => {
                write!(f, "range [{start:#x}, {end:#x}) is empty")
            }
            MapError::NotAReservationKind { kind } => {
                write!(f, "{kind} memory is the firmware's to declare, not ours to reserve")
            }
            MapError::Overlap {
                requested,
                existing,
            } => write!(
                f,
                "{} [{:#x}, {:#x}) overlaps the {} at [{:#x}, {:#x})",
                requested.kind,
                requested.start,
                requested.end,
                existing.kind,
                existing.start,
                existing.end
            ),
        }
    }
}

/// Where the pages of a successful [`MemoryMap::reserve`] were found. Only
/// usable pages change kind; the rest is left as it was, which is right for
/// boot data the firmware placed in its own memory but suggests a wrong map
/// when it happens to the kernel or a module, so callers decide whether to
/// warn.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ReserveOutcome {
    /// Bytes taken from usable RAM and now marked with the requested kind.
    pub carved_bytes: u64,
    /// Bytes in edge pages already held by an earlier reservation (two
    /// objects the boot loader packed into one page).
    pub shared_bytes: u64,
    /// Bytes in firmware-owned regions (reserved, ACPI, defective).
    pub firmware_bytes: u64,
    /// Bytes the map does not mention at all.
    pub unmapped_bytes: u64,
}

impl ReserveOutcome {
    /// True when every page of the range is RAM the kernel owns now.
    pub const fn lies_in_ram(&self) -> bool {
        self.firmware_bytes == 0 && self.unmapped_bytes == 0
    }
}

/// Fixed-capacity list of regions that coalesces as it grows.
struct RegionList {
    regions: [Region; CAPACITY],
    len: usize,
}

const NO_REGION: Region = Region {
    start: 0,
    end: 0,
    kind: RegionKind::Usable,
};

impl RegionList {
    const fn new() -> Self {
        Self {
            regions: [NO_REGION; CAPACITY],
            len: 0,
        }
    }

    fn as_slice(&self) -> &[Region] {
        &self.regions[..self.len]
    }

    /// Appends `region`, which must not start before the last one, merging
    /// it into the last one when they touch and share a kind.
    fn push_merging(&mut self, region: Region) -> Result<(), MapError> {
        if region.is_empty() {
            return Ok(());
        }
        if let Some(last) = self.regions[..self.len].last_mut() {
            if last.kind == region.kind && last.end >= region.start {
                last.end = last.end.max(region.end);
                return Ok(());
            }
        }
        let slot = self.regions.get_mut(self.len).ok_or(MapError::TableFull)?;
        *slot = region;
        self.len += 1;
        Ok(())
    }
}

/// The physical memory map. Build it with [`MemoryMap::add_firmware`], then
/// [`MemoryMap::normalise`] before asking it anything; `reserve` normalises
/// by itself.
pub struct MemoryMap {
    list: RegionList,
    /// False while raw firmware entries may overlap or be out of order.
    normalised: bool,
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.regions()).finish()
    }
}

impl MemoryMap {
    pub const fn new() -> Self {
        Self {
            list: RegionList::new(),
            normalised: true,
        }
    }

    /// The regions: as entered until `normalise`, sorted and disjoint after.
    pub fn regions(&self) -> &[Region] {
        self.list.as_slice()
    }

    pub fn is_empty(&self) -> bool {
        self.list.len == 0
    }

    pub fn is_normalised(&self) -> bool {
        self.normalised
    }

    /// Records one entry exactly as the firmware or boot loader gave it.
    /// On error the entry is dropped and the map is unchanged.
    pub fn add_firmware(&mut self, start: u64, len: u64, kind: RegionKind) -> Result<(), MapError> {
        if len == 0 {
            return Err(MapError::ZeroLength { start });
        }
        let end = start
            .checked_add(len)
            .ok_or(MapError::Overflow { start, len })?;
        if end > MAX_PHYS {
            return Err(MapError::AbovePhysLimit { start, end });
        }
        // The limit is MAX_REGIONS, not the storage size: the other half of
        // the storage is what normalise needs to split entries without loss.
        if self.list.len >= MAX_REGIONS {
            return Err(MapError::TableFull);
        }
        self.list.regions[self.list.len] = Region { start, end, kind };
        self.list.len += 1;
        self.normalised = false;
        Ok(())
    }

    /// Sorts the map, gives every overlapped byte to the most restrictive
    /// kind claiming it, and merges touching regions of the same kind.
    /// Idempotent.
    pub fn normalise(&mut self) {
        if self.normalised {
            return;
        }
        let mut resolved = RegionList::new();
        if resolve(self.regions(), &mut resolved).is_err() {
            // Cannot happen: add_firmware keeps at most MAX_REGIONS entries
            // (resolving to at most 2 * MAX_REGIONS - 1) and the longer tables
            // that reserve builds are already disjoint, so they do not grow.
            // Should it happen anyway, the regions not yet emitted become
            // holes, which nothing allocates from.
            log::error!("memory map: normalising overflowed; high regions dropped");
        }
        self.list.regions[..resolved.len].copy_from_slice(resolved.as_slice());
        self.list.len = resolved.len;
        self.normalised = true;
    }

    /// Marks `[start, end)`, rounded outward to whole pages, as `kind`
    /// wherever it is usable RAM. Pages that are firmware-owned or missing
    /// from the map are left as they are and reported in the outcome rather
    /// than refused, because boot data legitimately lives in firmware memory.
    ///
    /// Refused, leaving the map unchanged: an empty or inverted range, a
    /// range beyond [`MAX_PHYS`], a kind that is not one of ours, a full
    /// table, and a range whose whole pages overlap an earlier reservation.
    /// Only whole pages count for that check: a partial first or last page
    /// shared with an earlier reservation is two objects packed by the boot
    /// loader, not a conflict, and the page stays with the earlier one.
    pub fn reserve(
        &mut self,
        start: u64,
        end: u64,
        kind: RegionKind,
    ) -> Result<ReserveOutcome, MapError> {
        if !kind.is_reservation() {
            return Err(MapError::NotAReservationKind { kind });
        }
        if start >= end {
            return Err(MapError::EmptyRange { start, end });
        }
        if end > MAX_PHYS {
            return Err(MapError::AbovePhysLimit { start, end });
        }
        self.normalise();

        let requested = Region { start, end, kind };
        let (whole_start, whole_end) = (page_up(start), page_down(end));
        if let Some(existing) = self
            .regions()
            .iter()
            .find(|r| r.kind.is_reservation() && r.overlap_with(whole_start, whole_end) > 0)
        {
            return Err(MapError::Overlap {
                requested,
                existing: *existing,
            });
        }

        let (outer_start, outer_end) = (page_down(start), page_up(end));
        let mut outcome = ReserveOutcome::default();
        let mut carved = RegionList::new();
        for region in self.regions() {
            let overlap = region.overlap_with(outer_start, outer_end);
            match region.kind {
                RegionKind::Usable => outcome.carved_bytes += overlap,
                k if k.is_reservation() => outcome.shared_bytes += overlap,
                _ => outcome.firmware_bytes += overlap,
            }
            if region.kind != RegionKind::Usable || overlap == 0 {
                carved.push_merging(*region)?;
                continue;
            }
            let cut_start = region.start.max(outer_start);
            let cut_end = region.end.min(outer_end);
            carved.push_merging(Region {
                end: cut_start,
                ..*region
            })?;
            carved.push_merging(Region {
                start: cut_start,
                end: cut_end,
                kind,
            })?;
            carved.push_merging(Region {
                start: cut_end,
                ..*region
            })?;
        }
        outcome.unmapped_bytes = (outer_end - outer_start)
            - outcome.carved_bytes
            - outcome.shared_bytes
            - outcome.firmware_bytes;

        self.list.regions[..carved.len].copy_from_slice(carved.as_slice());
        self.list.len = carved.len;
        Ok(outcome)
    }

    /// Usable ranges shrunk inward to whole pages, in address order; ranges
    /// without a whole page are skipped. Requires a normalised map.
    pub fn usable_frames(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        debug_assert!(self.normalised, "memory map queried before normalise");
        self.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .map(|r| (page_up(r.start), page_down(r.end)))
            .filter(|(start, end)| start < end)
    }

    /// Bytes in whole usable pages.
    pub fn total_usable_bytes(&self) -> u64 {
        self.usable_frames().map(|(start, end)| end - start).sum()
    }

    /// End of the highest whole usable page, 0 if there is none: the size
    /// the frame bitmap has to cover.
    pub fn highest_usable_end(&self) -> u64 {
        self.usable_frames().last().map_or(0, |(_, end)| end)
    }

    /// Lowest address, aligned to `align` (a power of two; 0 means a page,
    /// smaller values are raised to a page), where `size` bytes rounded up to
    /// whole pages fit in usable RAM and end at or below `below`. Nothing is
    /// reserved: pass the result to [`MemoryMap::reserve`]. `None` when
    /// nothing fits, `size` is 0 or `align` is not a power of two.
    pub fn find_free(&self, size: u64, align: u64, below: u64) -> Option<u64> {
        if size == 0 || !(align == 0 || align.is_power_of_two()) {
            return None;
        }
        let align = align.max(PAGE_SIZE);
        let size = size.checked_next_multiple_of(PAGE_SIZE)?;
        self.usable_frames().find_map(|(start, end)| {
            let placed = start.checked_next_multiple_of(align)?;
            let placed_end = placed.checked_add(size)?;
            (placed_end <= end.min(below)).then_some(placed)
        })
    }
}

/// Sweeps over every boundary in `input` (any order, overlaps allowed) and
/// emits each stretch between two boundaries with the most restrictive kind
/// covering it. Quadratic, which is nothing for a few hundred entries and
/// needs no scratch space beyond `out`.
fn resolve(input: &[Region], out: &mut RegionList) -> Result<(), MapError> {
    let Some(mut position) = input.iter().map(|r| r.start).min() else {
        return Ok(());
    };
    while let Some(next) = next_boundary(input, position) {
        // No boundary lies strictly between `position` and `next`, so what
        // covers `position` covers the whole stretch.
        let winner = input
            .iter()
            .filter(|r| r.start <= position && position < r.end)
            .map(|r| r.kind)
            .max_by_key(|kind| kind.restrictiveness());
        if let Some(kind) = winner {
            out.push_merging(Region {
                start: position,
                end: next,
                kind,
            })?;
        }
        position = next;
    }
    Ok(())
}

fn next_boundary(input: &[Region], after: u64) -> Option<u64> {
    input
        .iter()
        .flat_map(|r| [r.start, r.end])
        .filter(|&boundary| boundary > after)
        .min()
}

/// Addresses in the map are below [`MAX_PHYS`], far from where rounding up
/// could overflow; saturating keeps that a non-issue rather than a panic.
fn page_up(address: u64) -> u64 {
    address.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

fn page_down(address: u64) -> u64 {
    address & !(PAGE_SIZE - 1)
}

#[cfg(test)]
mod tests {
    use super::RegionKind::*;
    use super::*;
    use std::format;
    use std::vec::Vec;

    fn region(start: u64, end: u64, kind: RegionKind) -> Region {
        Region { start, end, kind }
    }

    fn map_of(entries: &[(u64, u64, RegionKind)]) -> MemoryMap {
        let mut map = MemoryMap::new();
        for &(start, end, kind) in entries {
            map.add_firmware(start, end - start, kind).unwrap();
        }
        map.normalise();
        map
    }

    fn frames(map: &MemoryMap) -> Vec<(u64, u64)> {
        map.usable_frames().collect()
    }

    const MIB: u64 = 1 << 20;

    fn qemu_map() -> MemoryMap {
        map_of(&[
            (0, 0x9fc00, Usable),
            (0x9fc00, 0xa0000, Reserved),
            (0xf0000, 0x100000, Reserved),
            (0x100000, 0x7fe0000, Usable),
            (0x7fe0000, 0x8000000, Reserved),
            (0xfffc0000, 0x1_0000_0000, Reserved),
        ])
    }

    #[test]
    fn empty_map() {
        let mut map = MemoryMap::new();
        map.normalise();
        assert!(map.is_empty());
        assert_eq!(map.regions(), &[]);
        assert_eq!(map.usable_frames().count(), 0);
        assert_eq!(map.total_usable_bytes(), 0);
        assert_eq!(map.highest_usable_end(), 0);
        assert_eq!(map.find_free(PAGE_SIZE, 0, u64::MAX), None);
    }

    #[test]
    fn single_region() {
        let map = map_of(&[(MIB, 3 * MIB, Usable)]);
        assert_eq!(map.regions(), &[region(MIB, 3 * MIB, Usable)]);
        assert_eq!(map.total_usable_bytes(), 2 * MIB);
        assert_eq!(map.highest_usable_end(), 3 * MIB);
    }

    #[test]
    fn unsorted_input_is_sorted() {
        let map = map_of(&[
            (4 * MIB, 5 * MIB, Usable),
            (0, MIB, Usable),
            (2 * MIB, 3 * MIB, Reserved),
        ]);
        assert_eq!(
            map.regions(),
            &[
                region(0, MIB, Usable),
                region(2 * MIB, 3 * MIB, Reserved),
                region(4 * MIB, 5 * MIB, Usable),
            ]
        );
    }

    #[test]
    fn reserved_wins_over_usable_in_either_order() {
        let expected = [
            region(0, 2 * MIB, Usable),
            region(2 * MIB, 4 * MIB, Reserved),
        ];
        let usable_first = map_of(&[(0, 3 * MIB, Usable), (2 * MIB, 4 * MIB, Reserved)]);
        let reserved_first = map_of(&[(2 * MIB, 4 * MIB, Reserved), (0, 3 * MIB, Usable)]);
        assert_eq!(usable_first.regions(), &expected);
        assert_eq!(reserved_first.regions(), &expected);
    }

    #[test]
    fn firmware_ranking() {
        let map = map_of(&[
            (0, 4 * MIB, AcpiReclaimable),
            (MIB, 2 * MIB, Reserved),
            (3 * MIB, 4 * MIB, Defective),
            (3 * MIB, 5 * MIB, AcpiNvs),
        ]);
        assert_eq!(
            map.regions(),
            &[
                region(0, MIB, AcpiReclaimable),
                region(MIB, 2 * MIB, Reserved),
                region(2 * MIB, 3 * MIB, AcpiReclaimable),
                region(3 * MIB, 4 * MIB, Defective),
                region(4 * MIB, 5 * MIB, AcpiNvs),
            ]
        );
    }

    #[test]
    fn nested_ranges() {
        let hole = map_of(&[(0, 10 * MIB, Usable), (4 * MIB, 5 * MIB, Reserved)]);
        assert_eq!(
            hole.regions(),
            &[
                region(0, 4 * MIB, Usable),
                region(4 * MIB, 5 * MIB, Reserved),
                region(5 * MIB, 10 * MIB, Usable),
            ]
        );
        let swallowed = map_of(&[(0, 10 * MIB, Reserved), (4 * MIB, 5 * MIB, Usable)]);
        assert_eq!(swallowed.regions(), &[region(0, 10 * MIB, Reserved)]);
    }

    #[test]
    fn adjacent_and_overlapping_same_kind_merge() {
        let map = map_of(&[
            (0, MIB, Usable),
            (MIB, 2 * MIB, Usable),
            (MIB + 5, 3 * MIB, Usable),
            (4 * MIB, 5 * MIB, Usable),
        ]);
        assert_eq!(
            map.regions(),
            &[region(0, 3 * MIB, Usable), region(4 * MIB, 5 * MIB, Usable)]
        );
    }

    #[test]
    fn bad_entries_refused() {
        let mut map = MemoryMap::new();
        assert_eq!(
            map.add_firmware(MIB, 0, Usable),
            Err(MapError::ZeroLength { start: MIB })
        );
        assert_eq!(
            map.add_firmware(u64::MAX - 10, 20, Usable),
            Err(MapError::Overflow {
                start: u64::MAX - 10,
                len: 20
            })
        );
        assert_eq!(
            map.add_firmware(MAX_PHYS - PAGE_SIZE, 2 * PAGE_SIZE, Usable),
            Err(MapError::AbovePhysLimit {
                start: MAX_PHYS - PAGE_SIZE,
                end: MAX_PHYS + PAGE_SIZE
            })
        );
        assert!(map
            .add_firmware(MAX_PHYS - PAGE_SIZE, PAGE_SIZE, Usable)
            .is_ok());
        map.normalise();
        assert_eq!(map.regions().len(), 1);
    }

    #[test]
    fn qemu_e820() {
        let map = qemu_map();
        assert_eq!(map.regions().len(), 6);
        assert_eq!(frames(&map), [(0, 0x9f000), (0x100000, 0x7fe0000)]);
        assert_eq!(map.total_usable_bytes(), 0x9f000 + 0x7ee0000);
        assert_eq!(map.highest_usable_end(), 0x7fe0000);
    }

    #[test]
    fn module_over_kernel_is_refused() {
        let mut map = qemu_map();
        let kernel = map.reserve(0x100000, 0x180800, Kernel).unwrap();
        assert_eq!(kernel.carved_bytes, 0x81000);
        assert!(kernel.lies_in_ram());
        let before: Vec<Region> = map.regions().to_vec();

        let err = map.reserve(0x170000, 0x190000, Module).unwrap_err();
        assert_eq!(
            err,
            MapError::Overlap {
                requested: region(0x170000, 0x190000, Module),
                existing: region(0x100000, 0x181000, Kernel),
            }
        );
        let message = format!("{err}");
        assert!(message.contains("module [0x170000, 0x190000)"), "{message}");
        assert!(
            message.contains("kernel at [0x100000, 0x181000)"),
            "{message}"
        );
        assert_eq!(map.regions(), &before[..]);

        // Sharing the kernel's partial last page is packing, not a conflict.
        let module = map.reserve(0x180800, 0x190000, Module).unwrap();
        assert_eq!(module.shared_bytes, PAGE_SIZE);
        assert_eq!(module.carved_bytes, 0xf000);
        assert!(map.regions().contains(&region(0x181000, 0x190000, Module)));
    }

    #[test]
    fn reservation_kinds_only() {
        let mut map = qemu_map();
        assert_eq!(
            map.reserve(0x100000, 0x200000, Reserved),
            Err(MapError::NotAReservationKind { kind: Reserved })
        );
        assert_eq!(
            map.reserve(0x200000, 0x200000, Kernel),
            Err(MapError::EmptyRange {
                start: 0x200000,
                end: 0x200000
            })
        );
        assert_eq!(
            map.reserve(0x300000, 0x200000, Kernel),
            Err(MapError::EmptyRange {
                start: 0x300000,
                end: 0x200000
            })
        );
    }

    #[test]
    fn reserving_outside_ram() {
        let mut map = qemu_map();
        let before: Vec<Region> = map.regions().to_vec();
        // The EBDA: boot data in firmware memory stays as it is.
        let ebda = map.reserve(0x9fc00, 0xa0000, BootData).unwrap();
        assert_eq!(ebda.firmware_bytes, 0x400);
        assert_eq!(ebda.carved_bytes, 0xc00);
        assert!(!ebda.lies_in_ram());
        assert!(map.regions().contains(&region(0x9fc00, 0xa0000, Reserved)));
        assert!(map.regions().contains(&region(0x9f000, 0x9fc00, BootData)));

        // Wholly in the VGA hole: nothing changes.
        let mut map = qemu_map();
        let vga = map.reserve(0xb8000, 0xb9000, BootData).unwrap();
        assert_eq!(vga.unmapped_bytes, PAGE_SIZE);
        assert_eq!(map.regions(), &before[..]);

        // Straddling the end of RAM: only the RAM part is carved.
        let straddle = map.reserve(0x7fd0000, 0x8100000, Module).unwrap();
        assert_eq!(straddle.carved_bytes, 0x10000);
        assert_eq!(straddle.firmware_bytes, 0x20000);
        assert_eq!(straddle.unmapped_bytes, 0x100000);
        assert_eq!(map.highest_usable_end(), 0x7fd0000);
    }

    #[test]
    fn reservation_splits_and_rounds_outward() {
        let mut map = map_of(&[(0, 16 * MIB, Usable)]);
        map.reserve(MIB + 1, 2 * MIB - 1, BootData).unwrap();
        assert_eq!(
            map.regions(),
            &[
                region(0, MIB, Usable),
                region(MIB, 2 * MIB, BootData),
                region(2 * MIB, 16 * MIB, Usable),
            ]
        );
        assert_eq!(
            map.reserve(0, 16 * MIB + 1, Kernel),
            Err(MapError::Overlap {
                requested: region(0, 16 * MIB + 1, Kernel),
                existing: region(MIB, 2 * MIB, BootData),
            })
        );
        assert_eq!(
            map.reserve(MAX_PHYS, MAX_PHYS + 1, Kernel),
            Err(MapError::AbovePhysLimit {
                start: MAX_PHYS,
                end: MAX_PHYS + 1
            })
        );
    }

    #[test]
    fn unaligned_usable_regions_shrink_to_pages() {
        let map = map_of(&[
            (0x1234, 0x5678, Usable),
            (0x10001, 0x10fff, Usable),
            (0x20000, 0x20800, Usable),
        ]);
        assert_eq!(frames(&map), [(0x2000, 0x5000)]);
        assert_eq!(map.total_usable_bytes(), 0x3000);
        assert_eq!(map.highest_usable_end(), 0x5000);
    }

    #[test]
    fn find_free_honours_alignment_and_limit() {
        let map = qemu_map();
        assert_eq!(map.find_free(1, 0, u64::MAX), Some(0));
        assert_eq!(map.find_free(0xa0000, 0, u64::MAX), Some(0x100000));
        assert_eq!(map.find_free(0xa0000, 2 * MIB, u64::MAX), Some(0x200000));
        assert_eq!(map.find_free(PAGE_SIZE, PAGE_SIZE, PAGE_SIZE), Some(0));
        assert_eq!(map.find_free(0x10000, 0, 0x100000), Some(0));
        assert_eq!(map.find_free(0xa0000, 0, 0x7fe0000), Some(0x100000));
        assert_eq!(map.find_free(0xa0000, 0, 0x19ffff), None);
        assert_eq!(map.find_free(0x100000, 0x100000, 0x7fe0000), Some(0x100000));
        assert_eq!(map.find_free(0x8000000, 0, u64::MAX), None);
        assert_eq!(map.find_free(0, 0, u64::MAX), None);
        assert_eq!(map.find_free(PAGE_SIZE, 3 * PAGE_SIZE, u64::MAX), None);
        assert_eq!(map.find_free(u64::MAX, 0, u64::MAX), None);
    }

    #[test]
    fn find_free_skips_reservations() {
        let mut map = qemu_map();
        map.reserve(0x100000, 0x300000, Kernel).unwrap();
        assert_eq!(map.find_free(0xa0000, 0, u64::MAX), Some(0x300000));
    }

    #[test]
    fn normalise_is_idempotent() {
        let mut map = map_of(&[
            (0x5000, 0x9000, Reserved),
            (0, 0x10000, Usable),
            (0x8000, 0x20000, Usable),
            (0x30000, 0x31000, Defective),
            (0x30800, 0x40000, Usable),
        ]);
        let once: Vec<Region> = map.regions().to_vec();
        map.normalise();
        assert_eq!(map.regions(), &once[..]);
        // Feeding the result through again exercises the sweep itself.
        let again = map_of(
            &once
                .iter()
                .map(|r| (r.start, r.end, r.kind))
                .collect::<Vec<_>>(),
        );
        assert_eq!(again.regions(), &once[..]);
    }

    #[test]
    fn full_table() {
        let mut map = MemoryMap::new();
        // Alternating nested entries: the worst case for splitting.
        map.add_firmware(0, 2 * MAX_REGIONS as u64 * MIB, Usable)
            .unwrap();
        for i in 1..MAX_REGIONS as u64 {
            map.add_firmware(2 * i * MIB, MIB, Reserved).unwrap();
        }
        assert_eq!(map.add_firmware(0, MIB, Usable), Err(MapError::TableFull));
        map.normalise();
        assert_eq!(map.regions().len(), 2 * MAX_REGIONS - 1);
        assert_eq!(map.total_usable_bytes(), MAX_REGIONS as u64 * MIB + MIB);
        // Splitting a region once more does not fit.
        let before: Vec<Region> = map.regions().to_vec();
        map.reserve(0, 0x1000, Kernel).unwrap();
        assert_eq!(map.regions().len(), 2 * MAX_REGIONS);
        assert_eq!(
            map.reserve(0x4000, 0x5000, Module),
            Err(MapError::TableFull)
        );
        assert_eq!(map.regions().len(), 2 * MAX_REGIONS);
        assert_ne!(map.regions(), &before[..]);
    }

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            format!("{}", MapError::ZeroLength { start: 0x1000 }),
            "memory map entry at 0x1000 has length zero"
        );
        assert_eq!(
            format!("{}", region(0, 0x1000, AcpiNvs)),
            "ACPI NVS [0x0, 0x1000)"
        );
    }
}
