/*
 * sanos's VMI option ROM, for testing the VMI backend under QEMU
 * (`-option-rom build/vmi.rom`). The interface is described in README.md
 * beside this file: VMI API 13.3's layout, numbering and relocation
 * protocol with sanos's 64-bit register convention.
 *
 * Every call it offers does its operation natively and counts itself in
 * the ROM's data area (calls[n], one u64 per call number), so a kernel test
 * can see which operations really went through the ROM.
 *
 * The ROM is position independent: the kernel copies it into its own
 * image (where kernel text reaches it with call rel32) and runs it there;
 * every reference below is RIP-relative or an offset within the ROM. The
 * header's VMI signature, version, length and checksum are written after
 * assembly by `rig vmi-rom`, from the constants in hv/src/vmi.rs.
 *
 * Built with GNU as: `as --64` then `objcopy -O binary -j .rom`.
 */
        .intel_syntax noprefix
        .section .rom, "awx"

/* call n's slot */
.macro slot n
        .org rom_start + (\n) * 32, 0xcc
.endm

/* counts call n */
.macro count n
        inc qword ptr [rip + calls + (\n) * 8]
.endm

rom_start:
/* Slot 0: the header (struct vrom_header). */
        .word 0xaa55                    /* 0: option-ROM signature */
        .byte 0                         /* 2: length / 512: sealed */
        .byte 0xcb                      /* 3: the BIOS's init entry: retf */
        .byte 0x90, 0x90, 0x90          /* 4: rest of the entry */
        .byte 0                         /* 7: pad */
        .long 0                         /* 8: "cVmi": sealed */
        .byte 0, 0                      /* 12: API minor, major: sealed */
        .byte 0, 0                      /* 14: reserved */
        .long 0                         /* 16: reserved2 */
        .long rom_data - rom_start      /* 20: private: data area offset */
        .word 0                         /* 24: PCI header offset: none */
        .word 0                         /* 26: PnP header offset: none */
        .long 0                         /* 28: reserved */

        .code64

/* 4: Init(): measures the TSC against PIT channel 2 over 10 ms (what a
 * hypervisor would know). Returns 0, or -1 when the PIT never counts down. */
        slot 4
        count 4
        jmp vmi_init

/* 22: SetCR3(rdi = root) */
        slot 22
        count 22
        mov cr3, rdi
        ret

/* 26: GetCR3() -> rax. Offered, but relocated NONE: the kernel keeps its
 * own `mov rax, cr3`, and this counter must stay 0. */
        slot 26
        count 26
        mov rax, cr3
        ret

/* 35..38: the interrupt flag. Callee-saves-all: only RAX and the flags
 * change. */
        slot 35
        count 35
        sti
        ret

        slot 36
        count 36
        cli
        ret

        slot 37
        count 37
        pushfq
        pop rax
        ret

        slot 38
        count 38
        push rdi
        popfq
        ret

/* 42: Halt(): enable interrupts and wait, the sti shadow covering hlt. */
        slot 42
        count 42
        sti
        hlt
        ret

/* 55: InvalPage(rdi = address) */
        slot 55
        count 55
        invlpg [rdi]
        ret

/* 56: FlushTLB(rdi = flags): with FLUSH_GLOBAL, toggling CR4.PGE flushes
 * global entries too; else reloading CR3 flushes the rest. Only RAX
 * changes. */
        slot 56
        count 56
        mov rax, cr4
        test edi, 2
        jz 1f
        xor rax, 0x80
        mov cr4, rax
        xor rax, 0x80
        mov cr4, rax
        ret
1:      mov rax, cr3
        mov cr3, rax
        ret

/* 58: SetLinearMapping(rdi = slot, rsi = virtual address, rdx = pages,
 * rcx = first physical frame) */
        slot 58
        count 58
        jmp vmi_set_linear_mapping

/* 79: GetCycleFrequency() -> rax = cycles (TSC ticks) per second */
        slot 79
        count 79
        mov rax, [rip + tsc_hz]
        ret

/* 80: GetCycleCounter(rdi = REAL 0 / AVAILABLE 1 / STOLEN 2) -> rax */
        slot 80
        count 80
        jmp vmi_get_cycle_counter

/* 81: SetAlarm(rdi = flags, rsi = expiry in cycles, rdx = period) */
        slot 81
        count 81
        jmp vmi_set_alarm

/* 82: CancelAlarm(rdi = flags) */
        slot 82
        count 82
        jmp vmi_cancel_alarm

/* 85: GetRelocationInfo(rdi = call) -> rax = target, rdx = type */
        slot 85
        count 85
        jmp vmi_get_relocation_info

/* 87: SetPxELong(rdi = entry address, rsi = value) */
        slot 87
        count 87
        mov [rdi], rsi
        ret

        .org rom_start + 88 * 32, 0xcc

/* The bodies, C convention (System V). */

vmi_init:
        /* Gate channel 2 on, speaker off; mode 0, lobyte/hibyte, binary;
         * 11932 counts of 1193182 Hz = 10 ms. OUT2 (port 0x61 bit 5) rises
         * at terminal count. */
        in al, 0x61
        and al, 0xfc
        or al, 0x01
        out 0x61, al
        mov al, 0xb0
        out 0x43, al
        mov al, 0x9c
        out 0x42, al
        mov al, 0x2e
        out 0x42, al
        rdtsc
        shl rdx, 32
        or rax, rdx
        mov r8, rax
        mov ecx, 0x4000000
1:      in al, 0x61
        test al, 0x20
        jnz 2f
        dec ecx
        jnz 1b
        mov rax, -1
        ret
2:      rdtsc
        shl rdx, 32
        or rax, rdx
        sub rax, r8
        imul rax, rax, 100
        mov [rip + tsc_hz], rax
        xor eax, eax
        ret

vmi_set_linear_mapping:
        cmp rdi, 4
        jae 1f
        imul rdi, rdi, 24
        lea rax, [rip + linear]
        mov [rax + rdi], rsi
        mov [rax + rdi + 8], rdx
        mov [rax + rdi + 16], rcx
        /* The local APIC's page may have moved: find it again. */
        mov byte ptr [rip + apic_mode], 0
        xor eax, eax
        ret
1:      mov rax, -1
        ret

vmi_get_cycle_counter:
        cmp rdi, 2
        jae 1f
        rdtsc
        shl rdx, 32
        or rax, rdx
        ret
        /* Natively no cycle is stolen; an unknown counter reads 0. */
1:      xor eax, eax
        ret

vmi_set_alarm:
        test edi, 0x100                 /* periodic: not offered */
        jnz 3f
        movzx eax, dil
        cmp eax, 1                      /* REAL or AVAILABLE */
        ja 3f
        mov r11, rsi
        call apic_setup
        test eax, eax
        jnz 3f
        rdtsc
        shl rdx, 32
        or rax, rdx
        mov rcx, r11
        sub rcx, rax                    /* cycles to go */
        jg 1f
        mov ecx, 1
        /* counts = cycles * apic_hz / tsc_hz, at most 2^32 - 1, at least 1 */
1:      mov rax, rcx
        mul qword ptr [rip + apic_hz]
        cmp rdx, [rip + tsc_hz]
        jae 2f
        div qword ptr [rip + tsc_hz]
        mov ecx, 0xffffffff
        cmp rax, rcx
        jbe 4f
2:      mov eax, 0xffffffff
4:      test eax, eax
        jnz 5f
        mov eax, 1
5:      mov esi, eax
        mov edi, 0x380                  /* initial count */
        call apic_write
        xor eax, eax
        ret
3:      mov rax, -1
        ret

vmi_cancel_alarm:
        cmp byte ptr [rip + apic_mode], 0
        je 1f
        mov edi, 0x380
        xor esi, esi
        call apic_write
1:      xor eax, eax
        ret

vmi_get_relocation_info:
        cmp rdi, 88
        jae 1f
        lea rax, [rip + reloc_table]
        movzx edx, byte ptr [rax + rdi * 4]
        movzx ecx, word ptr [rax + rdi * 4 + 2]
        lea rax, [rip + rom_start]
        add rax, rcx
        ret
1:      xor eax, eax
        xor edx, edx
        ret

/* Finds the local APIC (x2APIC by MSRs, xAPIC through the page the guest
 * named with SetLinearMapping) and measures its timer against the TSC over
 * 1 ms, once. Returns 0, or -1 if the APIC is off or its page unmapped.
 * Clobbers RAX, RCX, RDX, RSI, RDI, R8-R10. */
apic_setup:
        cmp byte ptr [rip + apic_mode], 0
        jne 8f
        cmp qword ptr [rip + tsc_hz], 0
        je 9f
        mov ecx, 0x1b                   /* IA32_APIC_BASE */
        rdmsr
        test eax, 0x800                 /* enabled */
        jz 9f
        test eax, 0x400                 /* x2APIC mode */
        jnz 3f
        shl rdx, 32
        or rax, rdx
        shr rax, 12
        mov rdx, 0xffffffffff           /* 52-bit physical frame */
        and rax, rdx
        lea rsi, [rip + linear]
        mov ecx, 4
1:      mov rdx, rax
        sub rdx, [rsi + 16]             /* frame - first frame */
        jb 2f
        cmp rdx, [rsi + 8]              /* < pages */
        jae 2f
        shl rdx, 12
        add rdx, [rsi]
        mov [rip + apic_va], rdx
        mov byte ptr [rip + apic_mode], 1
        jmp 4f
2:      add rsi, 24
        dec ecx
        jnz 1b
        jmp 9f
3:      mov byte ptr [rip + apic_mode], 2
4:      mov edi, 0x3e0                  /* divide by 16 */
        mov esi, 3
        call apic_write
        mov edi, 0x380
        mov esi, 0xffffffff
        call apic_write
        rdtsc
        shl rdx, 32
        or rax, rdx
        mov r8, rax
        mov rax, [rip + tsc_hz]
        xor edx, edx
        mov ecx, 1000
        div rcx
        mov r9, rax                     /* cycles in 1 ms */
5:      rdtsc
        shl rdx, 32
        or rax, rdx
        sub rax, r8
        cmp rax, r9
        jb 5b
        mov edi, 0x390                  /* current count */
        call apic_read
        mov r10d, 0xffffffff
        sub r10, rax
        imul r10, r10, 1000
        mov [rip + apic_hz], r10
        mov edi, 0x380
        xor esi, esi
        call apic_write
8:      xor eax, eax
        ret
9:      mov byte ptr [rip + apic_mode], 0
        mov rax, -1
        ret

/* apic_write(edi = xAPIC register offset, esi = value). Clobbers RAX,
 * RCX, RDX. */
apic_write:
        cmp byte ptr [rip + apic_mode], 2
        jne 1f
        mov ecx, edi
        shr ecx, 4
        add ecx, 0x800
        mov eax, esi
        xor edx, edx
        wrmsr
        ret
1:      mov rax, [rip + apic_va]
        mov [rax + rdi], esi
        ret

/* apic_read(edi = register offset) -> eax. Clobbers RCX, RDX. */
apic_read:
        cmp byte ptr [rip + apic_mode], 2
        jne 1f
        mov ecx, edi
        shr ecx, 4
        add ecx, 0x800
        rdmsr
        ret
1:      mov rax, [rip + apic_va]
        mov eax, [rax + rdi]
        ret

/* GetRelocationInfo's answers: per call, {u8 type, u8 0, u16 target
 * offset}. CALL_REL (1) for what this ROM offers, NONE (0) for the rest
 * (GetCR3 included, on purpose). The marker lets the rig find the table
 * to build its corrupted ROMs. */
        .balign 8, 0xcc
        .ascii "RELOCTAB"
reloc_table:
        .set n, 0
        .rept 88
        .if n == 22 || n == 35 || n == 36 || n == 37 || n == 38 || n == 42 || n == 55 || n == 56 || n == 58 || n == 79 || n == 80 || n == 81 || n == 82 || n == 87
        .byte 1, 0
        .else
        .byte 0, 0
        .endif
        .word n * 32
        .set n, n + 1
        .endr

/* The data area: its own page(s), which the kernel maps writable and not
 * executable. */
        .balign 4096, 0
rom_data:
calls:          .fill 88, 8, 0          /* calls[n]: times call n ran */
tsc_hz:         .quad 0
apic_hz:        .quad 0                 /* timer counts per second, divide 16 */
apic_va:        .quad 0
linear:         .fill 4 * 3, 8, 0       /* {va, pages, first frame} x 4 */
apic_mode:      .byte 0                 /* 0 unknown, 1 xAPIC, 2 x2APIC */
