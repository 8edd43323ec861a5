//! The user address space: areas (`Vma`s) with their protection and what
//! backs them, filled in on demand by page faults.
//!
//! One program runs at a time, so its pages live in the lower half of the
//! kernel's own page tables (`mm::paging::map_user`). An area records what
//! a page should hold; the page fault handler allocates a frame and fills
//! it (zeros, or the bytes of the executable from the boot module) the
//! first time the page is touched, by the program or by the kernel copying
//! to or from it. `mmap`, `munmap`, `mprotect` and `brk` edit areas and the
//! pages already present.

use crate::mm::paging::{self, USER_END};
use crate::mm::{frames, xlate, PAGE_SIZE};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use pure::user::linux::Errno;
use x86_64::structures::paging::PhysFrame;
use x86_64::VirtAddr;

/// What a program may do with an area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Prot {
    pub const RW: Prot = Prot {
        read: true,
        write: true,
        exec: false,
    };

    /// From `PROT_READ` (1), `PROT_WRITE` (2), `PROT_EXEC` (4).
    pub fn from_linux(bits: u64) -> Option<Prot> {
        (bits & !7 == 0).then_some(Prot {
            read: bits & 1 != 0,
            write: bits & 2 != 0,
            exec: bits & 4 != 0,
        })
    }

    /// Whether any access is allowed (x86 pages cannot be write- or
    /// execute-only: either implies read).
    pub fn accessible(self) -> bool {
        self.read || self.write || self.exec
    }
}

/// What an area's pages start as.
#[derive(Clone)]
pub enum Backing {
    /// Zeros.
    Anon,
    /// File bytes: the page at `va` holds `data[offset + (va - start)..]`
    /// up to address `end`, zeros after (an ELF segment's bss).
    File {
        data: &'static [u8],
        offset: u64,
        end: u64,
    },
    /// A file of the namespace (`mmap` of a descriptor, private): the page
    /// at `va` is read from the node at `offset + (va - start)` when first
    /// touched; zeros past the file's end.
    Node {
        node: alloc::sync::Arc<dyn pure::fs::vfs::Node>,
        offset: u64,
    },
}

impl core::fmt::Debug for Backing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Backing::Anon => f.write_str("anonymous"),
            Backing::File { offset, end, .. } => write!(f, "image at {offset:#x} to {end:#x}"),
            Backing::Node { offset, .. } => write!(f, "file at {offset:#x}"),
        }
    }
}

/// What an area is for (`/proc/self/maps`, fault reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Image,
    Heap,
    Stack,
    Anon,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Image => "[image]",
            Kind::Heap => "[heap]",
            Kind::Stack => "[stack]",
            Kind::Anon => "",
        }
    }
}

/// One area, `[start, end)`, page aligned (its start is the map's key).
#[derive(Clone, Debug)]
pub struct Vma {
    pub end: u64,
    pub prot: Prot,
    pub backing: Backing,
    pub kind: Kind,
}

/// How a page was touched.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    pub write: bool,
    pub exec: bool,
}

/// Why a fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No area covers the address.
    Unmapped,
    /// The area's protection forbids the access.
    Protection,
    OutOfMemory,
}

/// Where `mmap` looks for room (top down) when the program names no
/// address: below the stack's reserve.
const MMAP_TOP: u64 = 0x7f00_0000_0000;
const MMAP_BOTTOM: u64 = 0x1000_0000;

pub struct AddressSpace {
    vmas: BTreeMap<u64, Vma>,
    pub brk_start: u64,
    pub brk: u64,
}

fn page_down(value: u64) -> u64 {
    value & !(PAGE_SIZE - 1)
}

/// `value` rounded up to a page; `None` past the user half.
pub fn page_up(value: u64) -> Option<u64> {
    value
        .checked_add(PAGE_SIZE - 1)
        .map(page_down)
        .filter(|&end| end <= USER_END)
}

impl AddressSpace {
    pub const fn new() -> AddressSpace {
        AddressSpace {
            vmas: BTreeMap::new(),
            brk_start: 0,
            brk: 0,
        }
    }

    /// The area containing `address`, with its start.
    pub fn find(&self, address: u64) -> Option<(u64, &Vma)> {
        let (&start, vma) = self.vmas.range(..=address).next_back()?;
        (address < vma.end).then_some((start, vma))
    }

    /// The areas, in address order.
    pub fn areas(&self) -> impl Iterator<Item = (u64, &Vma)> {
        self.vmas.iter().map(|(&start, vma)| (start, vma))
    }

    /// Maps `[start, end)` (page aligned) as a new area, replacing whatever
    /// was there (`MAP_FIXED`).
    pub fn insert(&mut self, start: u64, end: u64, prot: Prot, backing: Backing, kind: Kind) {
        self.remove(start, end);
        self.vmas.insert(
            start,
            Vma {
                end,
                prot,
                backing,
                kind,
            },
        );
    }

    /// Splits the area containing `at` (if any) so that an area starts at
    /// `at`.
    fn split(&mut self, at: u64) {
        let Some((start, vma)) = self.find(at).map(|(s, v)| (s, v.clone())) else {
            return;
        };
        if start == at {
            return;
        }
        let mut right = vma.clone();
        match vma.backing {
            Backing::File { data, offset, end } => {
                right.backing = Backing::File {
                    data,
                    offset: offset + (at - start),
                    end,
                }
            }
            Backing::Node { node, offset } => {
                right.backing = Backing::Node {
                    node,
                    offset: offset + (at - start),
                }
            }
            Backing::Anon => {}
        }
        if let Some(left) = self.vmas.get_mut(&start) {
            left.end = at;
        }
        self.vmas.insert(at, right);
    }

    /// Unmaps `[start, end)`: areas cut, present pages freed.
    pub fn remove(&mut self, start: u64, end: u64) {
        self.split(start);
        self.split(end);
        let starts: Vec<u64> = self.vmas.range(start..end).map(|(&s, _)| s).collect();
        for area in starts {
            if let Some(vma) = self.vmas.remove(&area) {
                free_pages(area, vma.end);
            }
        }
    }

    /// Changes the protection of `[start, end)`, which areas must cover
    /// entirely (`ENOMEM` otherwise, as Linux answers).
    pub fn protect(&mut self, start: u64, end: u64, prot: Prot) -> Result<(), Errno> {
        let mut at = start;
        while at < end {
            let (_, vma) = self.find(at).ok_or(Errno::ENOMEM)?;
            at = vma.end;
        }
        self.split(start);
        self.split(end);
        let keep = crate::backend::hooks().user.keeps_inaccessible_pages;
        for (&area, vma) in self.vmas.range_mut(start..end) {
            vma.prot = prot;
            if !prot.accessible() && !keep {
                // Cannot be present and inaccessible here: the pages go,
                // and read back as the area started if made accessible
                // again (unlike Linux, which keeps them).
                free_pages(area, vma.end);
                continue;
            }
            let mut page = area;
            while page < vma.end {
                paging::protect_user(
                    VirtAddr::new(page),
                    prot.accessible(),
                    prot.write,
                    prot.exec,
                )
                .map_err(|_| Errno::ENOMEM)?;
                page += PAGE_SIZE;
            }
        }
        Ok(())
    }

    /// Frees the present pages of `[start, end)`, keeping the areas: they
    /// read back as they started (`MADV_DONTNEED`).
    pub fn discard(&mut self, start: u64, end: u64) {
        free_pages(start, end);
    }

    /// `mremap`: resizes the area at `[old, old + old_len)` (which one area
    /// must hold entirely) to `new_len`, in place when it can grow there,
    /// else elsewhere when `may_move` (its present pages move with it).
    pub fn remap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        may_move: bool,
    ) -> Result<u64, Errno> {
        let (start, vma) = self
            .find(old)
            .map(|(s, v)| (s, v.clone()))
            .ok_or(Errno::EFAULT)?;
        let old_end = old.checked_add(old_len).ok_or(Errno::EINVAL)?;
        if old_end > vma.end {
            return Err(Errno::EFAULT);
        }
        if new_len <= old_len {
            self.remove(old + new_len, old_end);
            return Ok(old);
        }
        let new_end = old
            .checked_add(new_len)
            .filter(|&e| e <= USER_END)
            .ok_or(Errno::ENOMEM)?;
        // The backing as seen from `address`, for an area that will start
        // at `new_start`.
        let rebased = |address: u64, new_start: u64| match &vma.backing {
            Backing::Node { node, offset } => Backing::Node {
                node: node.clone(),
                offset: offset + (address - start),
            },
            Backing::File { data, offset, end } => Backing::File {
                data,
                offset: offset + (address - start),
                end: new_start + end.saturating_sub(address),
            },
            Backing::Anon => Backing::Anon,
        };
        let free_after = old_end == vma.end && !self.vmas.range(old_end..new_end).any(|_| true);
        if free_after {
            self.vmas.insert(
                old_end,
                Vma {
                    end: new_end,
                    prot: vma.prot,
                    backing: rebased(old_end, old_end),
                    kind: vma.kind,
                },
            );
            return Ok(old);
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let target = self.find_free(new_len).ok_or(Errno::ENOMEM)?;
        // Move the present pages, then the record.
        let mut page = old;
        while page < old_end {
            if let Some(frame) = paging::unmap_user(VirtAddr::new(page)) {
                let to = VirtAddr::new(target + (page - old));
                let prot = vma.prot;
                let moved = paging::map_user(to, frame, prot.write, prot.exec).and_then(|()| {
                    paging::protect_user(to, prot.accessible(), prot.write, prot.exec)
                });
                if moved.is_err() {
                    frames::free(frame);
                }
            }
            page += PAGE_SIZE;
        }
        self.split(old);
        self.split(old_end);
        self.vmas.remove(&old);
        self.vmas.insert(
            target,
            Vma {
                end: target + new_len,
                prot: vma.prot,
                backing: rebased(old, target),
                kind: vma.kind,
            },
        );
        Ok(target)
    }

    /// A free, page-aligned range of `len` bytes, as high as possible below
    /// [`MMAP_TOP`].
    pub fn find_free(&self, len: u64) -> Option<u64> {
        let mut top = MMAP_TOP;
        for (&start, vma) in self.vmas.range(..MMAP_TOP).rev() {
            if vma.end <= top && top - vma.end >= len {
                return Some(top - len);
            }
            top = top.min(start);
        }
        (top >= MMAP_BOTTOM + len).then(|| top - len)
    }

    /// What resolving a fault at `address` takes: `None` when the page is
    /// present already, else the page to fill and how. The filling happens
    /// outside the address space's lock ([`fill_fault`]), since reading a
    /// file may wait for that file's own lock.
    pub fn plan_fault(
        &self,
        address: u64,
        access: Access,
    ) -> Result<Option<FaultPlan>, FaultError> {
        let (start, vma) = self.find(address).ok_or(FaultError::Unmapped)?;
        let prot = vma.prot;
        let allowed =
            prot.accessible() && (!access.write || prot.write) && (!access.exec || prot.exec);
        if !allowed {
            return Err(FaultError::Protection);
        }
        let page = page_down(address);
        if paging::user_mapping(VirtAddr::new(page)).is_some() {
            return Ok(None);
        }
        Ok(Some(FaultPlan {
            page,
            start,
            backing: vma.backing.clone(),
        }))
    }

    /// Maps `frame`, filled by [`fill_fault`] for `plan`, if the area is
    /// still there with the same backing start and the page still absent;
    /// otherwise frees the frame (the program changed its mappings
    /// meanwhile: the faulting access is tried again).
    pub fn complete_fault(&mut self, plan: &FaultPlan, frame: PhysFrame) -> Result<(), FaultError> {
        let current = self.find(plan.page).map(|(start, vma)| (start, vma.prot));
        let still = matches!(current, Some((start, _)) if start == plan.start);
        let present = paging::user_mapping(VirtAddr::new(plan.page)).is_some();
        let Some((_, prot)) = current.filter(|_| still && !present) else {
            frames::free(frame);
            return if present {
                Ok(())
            } else {
                Err(FaultError::Unmapped)
            };
        };
        if paging::map_user(VirtAddr::new(plan.page), frame, prot.write, prot.exec).is_err() {
            frames::free(frame);
            return Err(FaultError::OutOfMemory);
        }
        Ok(())
    }

    /// Whether `[address, address + len)` lies in areas that allow
    /// `access` (what the kernel checks before it copies).
    pub fn allows(&self, address: u64, len: u64, access: Access) -> bool {
        let Some(end) = address.checked_add(len) else {
            return false;
        };
        if end > USER_END {
            return false;
        }
        let mut at = address;
        while at < end {
            let Some((_, vma)) = self.find(at) else {
                return false;
            };
            let prot = vma.prot;
            if !prot.read || (access.write && !prot.write) {
                return false;
            }
            at = vma.end;
        }
        true
    }

    /// `/proc/self/maps` lines.
    pub fn maps(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::string::String::new();
        for (start, vma) in self.areas() {
            let letter = |on: bool, c: char| if on { c } else { '-' };
            let _ = core::fmt::Write::write_fmt(
                &mut out,
                format_args!(
                    "{start:012x}-{:012x} {}{}{}p 00000000 00:00 0 {}\n",
                    vma.end,
                    letter(vma.prot.read, 'r'),
                    letter(vma.prot.write, 'w'),
                    letter(vma.prot.exec, 'x'),
                    vma.kind.name()
                ),
            );
        }
        out.into_bytes()
    }

    /// Unmaps everything (the program ended).
    pub fn clear(&mut self) {
        self.remove(0, USER_END);
        self.brk_start = 0;
        self.brk = 0;
    }
}

/// A page fault to resolve: the page, its area's start, what backs it.
pub struct FaultPlan {
    page: u64,
    start: u64,
    backing: Backing,
}

/// A fresh frame holding what `plan`'s page starts as.
pub fn fill_fault(plan: &FaultPlan) -> Result<PhysFrame, FaultError> {
    let frame = frames::alloc().ok_or(FaultError::OutOfMemory)?;
    fill(frame, plan.page, plan.start, &plan.backing);
    Ok(frame)
}

/// Writes the page at user address `page` of an area starting at `start`
/// into `frame`, through the direct map.
fn fill(frame: PhysFrame, page: u64, start: u64, backing: &Backing) {
    let target = xlate::phys_to_virt(frame.start_address()).as_mut_ptr::<u8>();
    // SAFETY: the frame is fresh from the allocator, 4 KiB, reached through
    // the direct map; nothing else refers to it yet.
    let bytes = unsafe { core::slice::from_raw_parts_mut(target, PAGE_SIZE as usize) };
    bytes.fill(0);
    if let Backing::Node { node, offset } = backing {
        // A short read leaves zeros (past the end of the file); an error
        // too: the page was asked for while the file could not be read.
        let _ = node.read_at(offset + (page - start), bytes);
    }
    if let Backing::File { data, offset, end } = backing {
        let (data, offset, end) = (*data, *offset, *end);
        let from = offset + (page - start);
        let count = end.saturating_sub(page).min(PAGE_SIZE) as usize;
        let available = (data.len() as u64).saturating_sub(from) as usize;
        let count = count.min(available);
        if count > 0 {
            bytes[..count].copy_from_slice(&data[from as usize..from as usize + count]);
        }
    }
}

/// Unmaps and frees the present pages of `[start, end)`.
fn free_pages(start: u64, end: u64) {
    let mut page = start;
    while page < end {
        if let Some(frame) = paging::unmap_user(VirtAddr::new(page)) {
            frames::free(frame);
        }
        page += PAGE_SIZE;
    }
}
