# xl.cfg parity and restricted disks (issue 20).
# A restricted guest writes its images past RLIMIT_FSIZE on both binaries.
TESTS += tests/integration/test-restricted-disks.sh tests/xlcfg/test-xlcfg-parity.sh
EXTRA_DIST += tests/integration/test-restricted-disks.sh tests/xlcfg/test-xlcfg-parity.sh \
	tests/xlcfg/build-libxl-argv.sh tests/xlcfg/compare.sh tests/xlcfg/normalise.sed \
	tests/xlcfg/libxl-argv.c \
	tests/xlcfg/corpus/01-xlexample-hvm.cfg \
	tests/xlcfg/corpus/02-minimal.cfg \
	tests/xlcfg/corpus/03-maxmem-videoram.cfg \
	tests/xlcfg/corpus/04-stdvga-boot.cfg \
	tests/xlcfg/corpus/05-vnc-listen-display.cfg \
	tests/xlcfg/corpus/06-vnc-off-serial.cfg \
	tests/xlcfg/corpus/07-nic-e1000.cfg \
	tests/xlcfg/corpus/08-two-nics-rtl.cfg \
	tests/xlcfg/corpus/09-usb-tablet.cfg \
	tests/xlcfg/corpus/10-keymap.cfg \
	tests/xlcfg/corpus/11-acpi-off.cfg \
	tests/xlcfg/corpus/12-no-platform-pci.cfg \
	tests/xlcfg/corpus/13-dm-args.cfg \
	tests/xlcfg/corpus/14-osstest-like.cfg \
	tests/xlcfg/corpus/15-ganeti-like.cfg \
	tests/xlcfg/corpus/16-cirrus-videoram.cfg \
	tests/xlcfg/corpus/17-vga-none.cfg \
	tests/xlcfg/corpus/18-four-disks.cfg \
	tests/xlcfg/corpus/19-maxvcpus.cfg \
	tests/xlcfg/corpus/20-restricted.cfg \
	tests/xlcfg/corpus/21-scsi-disk.cfg \
	tests/xlcfg/corpus/22-empty-cdrom.cfg \
	tests/xlcfg/corpus/23-nic-ne2k-e1000e.cfg \
	tests/xlcfg/corpus/24-vncdisplay-high.cfg
CLEANFILES += tests/xlcfg/libxl-argv tests/xlcfg/libxl-argv.new tests/xlcfg/libxenlight-open.a
# build-libxl-argv.sh's generated libxl headers.
clean-local: clean-local-xlcfg
clean-local-xlcfg:
	-rm -rf tests/xlcfg/gen
.PHONY: clean-local-xlcfg
