# sanos: `make` builds the kernel, `make run` boots it under QEMU, `make test`
# runs every test. The steps live in cargo and in images/; this file names
# them.

TARGET     := x86_64-unknown-none
BUILD      := build
KERNEL_BIN := target/$(TARGET)/release/sanos
CARGO      := cargo
RIG        := $(CARGO) run --quiet --release -p sanos-rig --

# make run [KVM=1] [APPEND="loglevel=debug"] [ISO=1] [SITE=folder] [NIC=model]
# [PORT=8080] [VMI=1]: the appliance under QEMU, serving SITE (default
# images/site) on http://127.0.0.1:PORT/ through QEMU's user network
# (restricted: the guest reaches nothing outside); VMI=1 adds the VMI test
# ROM, so the kernel runs on its VMI backend.
# make run INIT=path/to/static-binary [ARGS="..."] [FILES=folder] [PORT=n]:
# runs that program as init instead of the HTTP appliance (packed as
# /bin/NAME with FILES into the boot module); make's status is the
# program's exit status. make run XEN=pv|pvh boots Xen under QEMU
# with sanos as its dom0, the console on the terminal.
SITE       ?= images/site
NIC        ?= virtio-net-pci
PORT       ?= 8080
SITE_IMAGE := $(BUILD)/site.cpio
RUN_FLAGS := $(if $(KVM),--kvm) $(if $(ISO),--iso) $(if $(APPEND),--append "$(APPEND)") \
             --nic $(NIC) --port $(PORT) $(if $(INIT),,--site $(SITE_IMAGE)) \
             $(if $(VMI),--option-rom $(BUILD)/vmi.rom) \
             $(if $(INIT),--init "$(INIT)" $(if $(ARGS),--args "$(ARGS)") $(if $(FILES),--files "$(FILES)"))

.PHONY: all kernel site rom user iso run test test-host test-boot test-xen lint setup toolchain clean bench bench-xen xen-site

all: kernel site rom user

toolchain:
	@bash images/setup.sh

# The linked image keeps its symbols in build/sanos.debug; build/sanos.elf is
# stripped and points at it (.gnu_debuglink) for gdb.
kernel: toolchain
	$(CARGO) build --release -p sanos-kernel --bin sanos --target $(TARGET)
	@mkdir -p $(BUILD)
	objcopy --only-keep-debug $(KERNEL_BIN) $(BUILD)/sanos.debug
	objcopy --strip-all --add-gnu-debuglink=$(BUILD)/sanos.debug $(KERNEL_BIN) $(BUILD)/sanos.elf
	@echo "kernel: $(BUILD)/sanos.elf ($$(stat -c %s $(BUILD)/sanos.elf) bytes, stripped)"

# The site image: the files of $(SITE) as a cpio (newc) archive, the boot
# module the appliance serves.
site:
	@mkdir -p $(BUILD)
	$(RIG) cpio $(SITE) $(SITE_IMAGE)

# The VMI test ROM (images/vmi-rom): assembled position-independent,
# flattened, then sealed by the rig (padding, VMI signature and version,
# length, checksum: the constants live in hv/src/vmi.rs). `make run VMI=1`
# boots with it; the boot matrix's vmi configurations load it.
VMI_ROM := $(BUILD)/vmi.rom
rom: $(VMI_ROM)

$(VMI_ROM): images/vmi-rom/vmi-rom.S hv/src/vmi.rs images/rig/src/vmi_rom.rs
	@mkdir -p $(BUILD)
	as --64 -o $(BUILD)/vmi-rom.o images/vmi-rom/vmi-rom.S
	objcopy -O binary -j .rom $(BUILD)/vmi-rom.o $(BUILD)/vmi-rom.bin
	$(RIG) vmi-rom $(BUILD)/vmi-rom.bin $@

# The test programs (images/user/*.c, with musl-gcc and gcc -static, and
# broken executables) packed into the boot module `init=` runs them from.
USER_IMAGE := $(BUILD)/user.cpio
user: $(USER_IMAGE)

$(USER_IMAGE): $(wildcard images/user/*.c images/user/*.h) $(shell find images/user/root -type f) images/user/build.sh
	bash images/user/build.sh $(BUILD)/user $@ $(RIG)

iso: kernel
	bash images/mkiso.sh $(BUILD)/sanos.elf $(BUILD)/sanos.iso

run: kernel site $(if $(VMI),rom)
ifeq ($(XEN),)
	$(RIG) run $(RUN_FLAGS)
else
	INTERACTIVE=1 DOM0_PVH=$(if $(filter pvh,$(XEN)),1,0) \
	    bash images/xen/dom0-kernel.sh $(BUILD)/sanos.elf $(APPEND)
endif

test: kernel lint test-host test-boot test-xen

test-host:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --tests -- -D warnings
	$(CARGO) clippy --release -p sanos-kernel --bin sanos --target $(TARGET) -- -D warnings

test-boot: kernel rom user
	$(RIG) test

# The full Xen rig: Xen 4.17 + a Debian Linux dom0 under QEMU TCG runs
# `xl create images/sanos.cfg` as a PV and then as a PVH domU, each
# running the kernel tests (its vif on dom0's bridge is driven by
# netfront); `xl shutdown` must remove each cleanly; a third
# (PV) guest is stopped by `xl reboot`; the rig types at a fourth one's
# shell (console ring input) until `poweroff`; a fifth and sixth serve
# HTTP as PV and PVH (sanos-http.cfg), fetched from dom0 over the bridge
# and checked by md5; a seventh and eighth run images/user/server.c as
# init (PV: in ring 3 beside the kernel, PVH: ring 3 under a ring-0
# kernel) and dom0 fetches a file from it; a ninth and tenth serve HTTP
# while they are saved and restored, saved with -c (cancelled), migrated
# to the same host (PVH only: Debian's Xen has no log-dirty mode for PV)
# and paused, their monotonic heartbeat checked across each cycle
# (sanos-suspend-pv/pvh). Then Debian's Linux with a busybox
# initrd as a PV and a PVH domU, for the table of `xl create` to banner
# times. Packages are cached under build/xen.
# The site the Xen HTTP guests serve: images/site and a 1.5 MiB file of
# one repeated line (its md5 is in images/xen/sanos-http.expect).
XEN_SITE := $(BUILD)/xen-site
xen-site: $(BUILD)/xen-site.cpio
$(BUILD)/xen-site.cpio: $(wildcard images/site/*)
	rm -rf $(XEN_SITE) && mkdir -p $(XEN_SITE) && cp images/site/* $(XEN_SITE)/
	yes "sanos serves a large file over netfront" | head -c 1572871 > $(XEN_SITE)/big.bin
	$(RIG) cpio $(XEN_SITE) $(BUILD)/xen-site.cpio

test-xen: kernel user xen-site
	bash images/xen/xl-test.sh \
	    --guest sanos-pv=images/sanos.cfg:build/sanos.elf \
	    --xl 'sanos-pv=type="pv"' --xl 'sanos-pv=cmdline="test test.wait"' \
	    --guest sanos-pvh=images/sanos.cfg:build/sanos.elf \
	    --xl 'sanos-pvh=type="pvh"' --xl 'sanos-pvh=cmdline="test test.wait"' \
	    --guest sanos-reboot=images/xen/sanos-reboot.cfg:build/sanos.elf \
	    --guest sanos-shell=images/xen/sanos-shell.cfg:build/sanos.elf \
	    --guest sanos-http=images/xen/sanos-http.cfg:build/sanos.elf:build/xen-site.cpio \
	    --guest sanos-http-pvh=images/xen/sanos-http.cfg:build/sanos.elf:build/xen-site.cpio \
	    --xl 'sanos-http-pvh=type="pvh"' \
	    --guest sanos-user-pv=images/xen/sanos-user.cfg:build/sanos.elf:build/user.cpio \
	    --guest sanos-user-pvh=images/xen/sanos-user.cfg:build/sanos.elf:build/user.cpio \
	    --xl 'sanos-user-pvh=type="pvh"' \
	    --guest sanos-suspend-pv=images/xen/sanos-suspend-pv.cfg:build/sanos.elf:build/xen-site.cpio \
	    --guest sanos-suspend-pvh=images/xen/sanos-suspend-pvh.cfg:build/sanos.elf:build/xen-site.cpio \
	    --linux

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

# Benchmarks: tables, never pass/fail on timing.
bench: kernel rom user xen-site
	$(RIG) bench
	bash images/net-bench/run.sh
	bash images/xen/bench.sh

# Suspend/resume times of sanos and Debian's Linux under the Xen rig
# (xl save/restore, save -c, migrate, pause), the same memory each.
bench-xen: kernel xen-site
	bash images/xen/bench.sh
