# The documented differences between libxl's device-model command line and
# libdm's (README, "xl.cfg: what differs from libxl, and why"). Applied to
# both sides before they are compared; anything else must be equal.
#
# 1. libdm always hands QEMU its monitor as a pre-bound socket (fd=3; libxl
#    does so only under dm_restrict, by path otherwise): no race on the
#    path, and the connection is made before exec (seed 001).
s/^socket,id=libxl-cmd,\(fd=[0-9]*\|path=[^,]*\),server=on,wait=off$/socket,id=libxl-cmd,MONITOR,server=on,wait=off/
# 2. libdm always starts QEMU paused (-S) and resumes it once QMP says it
#    is ready (seed 001); libxl's qemu-xen starts it paused only by waiting.
/^-S$/d
# 3. A NIC without mac= gets a random one from libxl and from libdm alike
#    (Xen's OUI 00:16:3e); the corpus gives explicit MACs another prefix.
s/mac=00:16:3e:[0-9a-f:]*/mac=RANDOM/
# 4. A vif without bridge=: libxl names its default bridge (xenbr0) for its
#    hotplug script; libdm assumes no bridge and leaves the tap unbridged.
s/,br=xenbr0,/,/
# 5. dm_restrict: libdm adds QEMU's own seccomp (-sandbox) when the binary
#    has it (SECURITY.md; libxl passes none). The Xen DM has none: at a
#    real start the keeper's filter is used and no -sandbox is passed; the
#    plan, which runs no probe, shows it.
/^-sandbox$/{N;d}
