//! The shape of a PV guest's P2M frame list (`arch_shared_info` in
//! `xen/include/public/arch-x86/xen.h`, read by the toolstack's save in
//! `tools/libs/guest/xg_sr_save_x86_pv.c`): the P2M is an array of one
//! machine frame number per guest page; the frame list holds the machine
//! frames of the P2M's pages, 512 to a page; the top page (whose frame is
//! `pfn_to_mfn_frame_list_list`) holds the machine frames of the frame
//! list's pages. `max_pfn` is the number of guest pages.

/// Frame numbers (8 bytes each) in one 4 KiB page.
pub const FRAMES_PER_PAGE: u64 = 512;

/// How many pages the P2M of `nr_pages` guest pages takes, and how many
/// frame-list pages name those; `None` when one top page cannot name them
/// all (more than 512 frame-list pages: over 512 GiB of guest memory).
pub const fn frame_list_pages(nr_pages: u64) -> Option<(u64, u64)> {
    let p2m_pages = nr_pages.div_ceil(FRAMES_PER_PAGE);
    let list_pages = p2m_pages.div_ceil(FRAMES_PER_PAGE);
    if list_pages > FRAMES_PER_PAGE || nr_pages == 0 {
        None
    } else {
        Some((p2m_pages, list_pages))
    }
}

/// Where the machine frame of P2M page `page` goes: (frame-list page,
/// slot in it).
pub const fn frame_list_slot(page: u64) -> (usize, usize) {
    (
        (page / FRAMES_PER_PAGE) as usize,
        (page % FRAMES_PER_PAGE) as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        // 64 MiB: 16384 pages, 32 P2M pages, one frame-list page.
        assert_eq!(frame_list_pages(16384), Some((32, 1)));
        assert_eq!(frame_list_pages(1), Some((1, 1)));
        assert_eq!(frame_list_pages(512), Some((1, 1)));
        assert_eq!(frame_list_pages(513), Some((2, 1)));
        // 1 GiB of frames per frame-list page: 512 * 512 pages.
        assert_eq!(frame_list_pages(512 * 512), Some((512, 1)));
        assert_eq!(frame_list_pages(512 * 512 + 1), Some((513, 2)));
        // The most one top page names, then too many; no pages at all.
        assert_eq!(frame_list_pages(512 * 512 * 512), Some((512 * 512, 512)));
        assert_eq!(frame_list_pages(512 * 512 * 512 + 1), None);
        assert_eq!(frame_list_pages(0), None);
    }

    #[test]
    fn slots() {
        assert_eq!(frame_list_slot(0), (0, 0));
        assert_eq!(frame_list_slot(511), (0, 511));
        assert_eq!(frame_list_slot(512), (1, 0));
        assert_eq!(frame_list_slot(1025), (2, 1));
    }
}
