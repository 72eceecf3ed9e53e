/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Device models: configuration, spawn, readiness, guarded resume, teardown.
 *
 * A device model (DM) is always started paused (-S). It is ready when QMP
 * alone says so: greeting, qmp_capabilities, and query-status answering
 * prelaunch, paused or inmigrate. Nothing read from xenstore ever decides
 * readiness. (The "events" migration capability is turned on by the
 * migration that needs it: a start sends nothing else, as QEMU reads its
 * monitor a byte at a time.)
 *
 * Each DM runs under a small keeper process (libdm-keeper) that stays its
 * parent: it reaps the DM whoever else has gone, records how it ended, and
 * kills it if an autokill owner goes away (see libdm/migrate.h).
 *
 * DM states (libdm_dm_state):
 *   SPAWNING -> NEGOTIATING -> PAUSED | INCOMING
 *   INCOMING -> PAUSED (incoming migration confirmed completed)
 *   PAUSED <-> RUNNING;  any -> STOPPING -> DEAD;  any live -> BROKEN
 *   (monitor stopped answering; can still be stopped).
 */
#ifndef LIBDM_DM_H
#define LIBDM_DM_H

#include <libdm/ctx.h>
#include <libdm/qmp.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct libdm_dm_config libdm_dm_config;
typedef struct libdm_dm libdm_dm;

typedef enum libdm_profile {
    LIBDM_PROFILE_PLAIN, /* TCG command line for hosts without Xen */
    LIBDM_PROFILE_XEN,   /* the qemu-xen command line libxl builds for HVM */
} libdm_profile;

typedef enum libdm_dm_state {
    LIBDM_DM_SPAWNING,
    LIBDM_DM_NEGOTIATING,
    LIBDM_DM_PAUSED,
    LIBDM_DM_INCOMING,
    LIBDM_DM_RUNNING,
    LIBDM_DM_STOPPING,
    LIBDM_DM_DEAD,
    LIBDM_DM_BROKEN,
} libdm_dm_state;

/* --- configuration. Every setter validates its input and returns -EINVAL
 * (leaving the configuration unchanged) if it is malformed. --- */
LIBDM_EXPORT int libdm_dm_config_new(libdm_dm_config **ret_config);
LIBDM_EXPORT libdm_dm_config *libdm_dm_config_free(libdm_dm_config *config);
/* 1-64 characters of [A-Za-z0-9_.-], not starting with '.' or '-'. */
LIBDM_EXPORT int libdm_dm_config_set_name(libdm_dm_config *config, const char *name);
/* 1..32751 (DOMID_FIRST_RESERVED - 1); 0 means none (plain profile only). */
LIBDM_EXPORT int libdm_dm_config_set_domid(libdm_dm_config *config, uint32_t domid);
LIBDM_EXPORT int libdm_dm_config_set_profile(libdm_dm_config *config, libdm_profile profile);
LIBDM_EXPORT int libdm_dm_config_set_memory_mb(libdm_dm_config *config, uint64_t mb);
/* xl's maxmem: the guest's maximum memory (0: as memory). On the xen
 * profile QEMU's -m is maxmem less the video memory, as libxl passes it. */
LIBDM_EXPORT int libdm_dm_config_set_maxmem_mb(libdm_dm_config *config, uint64_t mb);
LIBDM_EXPORT int libdm_dm_config_set_machine(libdm_dm_config *config, const char *machine);
/* dm_restrict (see SECURITY.md): -runas, -chroot into an empty directory,
 * seccomp, and in the keeper before exec: mount and IPC namespaces, rlimits,
 * no_new_privs (and -xen-domid-restrict on xen). Needs root. */
LIBDM_EXPORT int libdm_dm_config_set_restrict(libdm_dm_config *config, int enable);
/* A user name or uid:gid. Root is refused ("root", uid 0 or gid 0). Without
 * it a restricted DM runs as libxl would run it on the xen profile (user
 * xen-qemuuser-range-base's uid + domid, else xen-qemuuser-shared), and the
 * plain profile refuses to start. */
LIBDM_EXPORT int libdm_dm_config_set_runas(libdm_dm_config *config, const char *user);
/* An existing empty directory, ours and not a symlink, not "/" (checked at
 * start). Without it libdm makes one (mode 0000) and removes it at stop:
 * /var/run/xen/qemu-root-DOMID on xen, root/ in the DM's directory on plain. */
LIBDM_EXPORT int libdm_dm_config_set_chroot(libdm_dm_config *config, const char *dir);
/* How a restricted DM gets its seccomp filter. AUTO: QEMU's own -sandbox if
 * the binary supports it (probed once per binary), else the keeper's filter;
 * QEMU: always -sandbox; FILTER: always the keeper's libseccomp filter. */
typedef enum libdm_seccomp {
    LIBDM_SECCOMP_AUTO,
    LIBDM_SECCOMP_QEMU,
    LIBDM_SECCOMP_FILTER,
} libdm_seccomp;
LIBDM_EXPORT int libdm_dm_config_set_seccomp(libdm_dm_config *config, libdm_seccomp mode);
/* "defer" or a QEMU migration URI (unix:, tcp:, fd:, exec:). */
LIBDM_EXPORT int libdm_dm_config_set_incoming(libdm_dm_config *config, const char *uri);
LIBDM_EXPORT int libdm_dm_config_set_qemu_path(libdm_dm_config *config, const char *path);
/* Extra QEMU arguments, unchecked, as xl's device_model_args: on the xen
 * profile placed where libxl 4.17 puts them (before -machine); on the plain
 * profile at the end. */
LIBDM_EXPORT int libdm_dm_config_add_extra_arg(libdm_dm_config *config, const char *arg);
/* As xl's device_model_args_hvm: on the xen profile right after -machine's
 * value (libxl's place), on the plain profile at the end. */
LIBDM_EXPORT int libdm_dm_config_add_extra_arg_hvm(libdm_dm_config *config, const char *arg);
/* Hands QEMU an open file: a duplicate of @fd is kept by the configuration
 * (the caller keeps its own) and QEMU gets it as fd *ret_qemu_fd, to name in
 * QEMU options, e.g. libdm_dm_config_set_incoming(cfg, "fd:7") for a
 * restore from a saved stream (works under dm_restrict: the file is opened
 * by the caller). At most LIBDM_MAX_PASS_FDS; -E2BIG beyond. */
#define LIBDM_PASS_FD_FIRST 7
#define LIBDM_MAX_PASS_FDS 16
LIBDM_EXPORT int libdm_dm_config_pass_fd(libdm_dm_config *config, int fd, int *ret_qemu_fd);
/* --- devices (libdm/devices.c). Same rule: every setter validates and
 * returns -EINVAL, leaving the configuration unchanged. Both profiles; the
 * xen profile spells them as libxl 4.17 does (README, "Devices"). Devices
 * need a real machine: "-machine none" refuses them at build time. --- */
typedef enum libdm_disk_format {
    LIBDM_DISK_RAW,
    LIBDM_DISK_QCOW2,
} libdm_disk_format;
enum {
    LIBDM_DISK_READONLY = 1u << 0, /* refused on IDE hard disks, as libxl does */
    LIBDM_DISK_CDROM = 1u << 1,    /* an IDE CD-ROM (always read-only) */
};
/* @vdev: hda..hdd or xvda..xvdd (IDE 0-3), sda..sdp (SCSI, lsi53c895a);
 * one disk per number (xvda and hda are both disk 0). @path: an absolute
 * image file or block device; NULL only for an empty CD-ROM. The image must
 * exist at start. Under dm_restrict libdm opens it and QEMU gets the fd
 * (-add-fd + file=/dev/fdset/N): QEMU never resolves the path itself. */
#define LIBDM_MAX_DISKS 8
LIBDM_EXPORT int libdm_dm_config_add_disk(libdm_dm_config *config, const char *vdev,
                                          const char *path, libdm_disk_format format,
                                          unsigned flags);
/* An emulated NIC on a tap. @mac "xx:xx:xx:xx:xx:xx" (unicast), NULL for
 * libxl's 00:16:3e:xx:xx:xx (random). @model e1000, e1000e, rtl8139 (NULL:
 * libxl's default rtl8139), ne2k_pci or virtio-net-pci. At start libdm
 * creates the tap (@ifname, NULL: vif<domid>.<n>-emu, or dm<name>.<n> without a domid),
 * brings it up, adds it to @bridge (NULL: none; it must exist) and hands it
 * to QEMU as an open fd; the tap goes away with QEMU (removed at stop).
 * *@ret_devid (may be NULL) is its number n. */
#define LIBDM_MAX_NICS 8
LIBDM_EXPORT int libdm_dm_config_add_nic(libdm_dm_config *config, const char *mac,
                                         const char *model, const char *bridge,
                                         const char *ifname, int *ret_devid);
/* The same on the caller's open tap fd (duplicated; the caller keeps its own). */
LIBDM_EXPORT int libdm_dm_config_add_nic_fd(libdm_dm_config *config, const char *mac,
                                            const char *model, int tap_fd, int *ret_devid);
/* VNC on @listen (NULL: 127.0.0.1; a host name or address, or
 * "unix:/ABS/PATH") display @display (0-59635: TCP port 5900 + display;
 * ignored for unix:). @password
 * (1-8 printable characters, NULL: none) never appears on the command line:
 * QEMU starts with password=on (nobody can connect) and libdm_dm_apply_config()
 * sets it over QMP. @display -1 turns VNC off (the default: -display none). */
LIBDM_EXPORT int libdm_dm_config_set_vnc(libdm_dm_config *config, const char *listen,
                                         int display, const char *password);
/* xl's vncunused: QEMU takes the first free display from @display on
 * (",to=99"). Default: on for the xen profile (libxl's default), off for
 * plain. */
LIBDM_EXPORT int libdm_dm_config_set_vnc_findunused(libdm_dm_config *config, int on);
/* xl's keymap (QEMU's -k), e.g. "de" or "en-us"; NULL: none. */
LIBDM_EXPORT int libdm_dm_config_set_keymap(libdm_dm_config *config, const char *keymap);
typedef enum libdm_serial_kind {
    LIBDM_SERIAL_PTY,
    LIBDM_SERIAL_FILE, /* @path written by QEMU */
    LIBDM_SERIAL_UNIX, /* @path: a listening socket QEMU makes */
} libdm_serial_kind;
#define LIBDM_MAX_SERIALS 4
LIBDM_EXPORT int libdm_dm_config_add_serial(libdm_dm_config *config, libdm_serial_kind kind,
                                            const char *path);
/* 1..128 vCPUs online of @max_vcpus (0: the same). */
LIBDM_EXPORT int libdm_dm_config_set_vcpus(libdm_dm_config *config, unsigned vcpus,
                                           unsigned max_vcpus);
/* 1-4 distinct letters of "acdn" (floppy, disk, CD-ROM, network); NULL clears. */
LIBDM_EXPORT int libdm_dm_config_set_boot(libdm_dm_config *config, const char *order);
typedef enum libdm_vga {
    LIBDM_VGA_NONE,   /* the default */
    LIBDM_VGA_STD,
    LIBDM_VGA_CIRRUS,
} libdm_vga;
/* @vgamem_mb 0: libxl's default (16 std, 8 cirrus), else 1..256; the xen
 * profile refuses, as libxl does, less than 16 for std and 8 for cirrus. */
LIBDM_EXPORT int libdm_dm_config_set_vga(libdm_dm_config *config, libdm_vga vga,
                                         unsigned vgamem_mb);
/* xl's acpi: @on 0 passes -no-acpi (default: ACPI on). */
LIBDM_EXPORT int libdm_dm_config_set_acpi(libdm_dm_config *config, int on);
/* A USB controller (-usb), with a tablet if @tablet (which implies it). */
LIBDM_EXPORT int libdm_dm_config_set_usb(libdm_dm_config *config, int usb, int tablet);
/* -machine options libxl sets on xenfv: "suppress-vmdesc" (on|off; the xen
 * profile defaults to on as libxl), "max-ram-below-4g" (bytes, 256 MiB ..
 * 4 GiB, a multiple of 1 MiB) and, xen profile only, "igd-passthru" (on|off).
 * @value NULL clears. */
LIBDM_EXPORT int libdm_dm_config_set_machine_opt(libdm_dm_config *config, const char *key,
                                                 const char *value);
/* A caller-built command line (libxl's, for libdm-xl-dm): @argv (NULL
 * terminated, without the binary: see set_qemu_path) is used as it is, in
 * order; libdm adds -S if missing, its own monitor (a second one: the
 * caller's stays the caller's) and, restricted, -sandbox when the binary
 * has seccomp. The device options above are then ignored; the profile must
 * be xen with a domid, and a restricted one names the argv's -runas and
 * -chroot through set_runas / set_chroot. Recorded with profile "xl":
 * libdm writes none of libxl's xenstore keys for it. Its caller may
 * resume it over its own monitor before libdm's readiness exchange: a
 * "running" answer is then ready too (state RUNNING). */
LIBDM_EXPORT int libdm_dm_config_set_argv(libdm_dm_config *config, const char *const *argv);
/* The DM's log: QEMU's stdout and stderr and its keeper's messages go to
 * @fd (libdm keeps a duplicate) instead of the run directory's "log",
 * always through the keeper's pipe, capped at 256 KiB (then a note, the
 * rest dropped). For libxl's log file, which libxl hands its DM as
 * stdout/stderr. The error messages of a DM that died then carry no tail
 * of its log. -EINVAL for a negative fd. */
LIBDM_EXPORT int libdm_dm_config_set_log_fd(libdm_dm_config *config, int fd);
/* Deadline for start-to-ready and each monitor exchange (ms, default 10 s). */
LIBDM_EXPORT int libdm_dm_config_set_timeout_ms(libdm_dm_config *config, int timeout_ms);
/* The argv the DM would be started with, its QMP monitor on @qmp_fd; a NULL
 * terminated array freed with libdm_strv_free(). */
LIBDM_EXPORT int libdm_dm_config_build_argv(const libdm_dm_config *config, int qmp_fd,
                                            char ***ret_argv);
LIBDM_EXPORT char **libdm_strv_free(char **strv);
/* The configuration document (libdm/config-doc.c): @config as versioned
 * JSON (*ret_text malloc'd) with every device, for starting the same DM
 * elsewhere (migration). It holds the VNC password: never log it. The name,
 * binary, timeout and incoming are not in it. -ENOTSUP, *ret_why (may be
 * NULL) saying why, for what cannot travel: set_argv, a caller's tap fd,
 * passed fds. */
LIBDM_EXPORT int libdm_dm_config_to_doc(const libdm_dm_config *config, char **ret_text,
                                        const char **ret_why);
/* A new configuration from a document; -EINVAL with the reason in @why
 * (never the password) for an unknown version, an unknown member or
 * anything this libdm would refuse. Nothing is started. */
LIBDM_EXPORT int libdm_dm_config_from_doc(const char *text, size_t len,
                                          libdm_dm_config **ret_config, char *why,
                                          size_t why_len);

/* --- lifecycle --- */
typedef void libdm_dm_done_fn(libdm_dm *dm, int status, void *userdata);

/* Spawns the DM paused and waits for QMP readiness; records it in the store.
 * On failure the DM is killed and reaped, nothing is left behind, and
 * libdm_dm_last_error() on the returned-NULL path is reported through the
 * logger; the async form reports through @cb with the DM handle still valid
 * for libdm_dm_last_error() until freed.
 *
 * libdm_dm_start_async() itself only checks the configuration (-EINVAL for
 * one that cannot become a command line) and the store, and creates
 * nothing: the claim of the name, dm_restrict (the -sandbox probe runs in
 * the background), the record and the keeper are steps run from the loop,
 * each a short dispatch. Refusals found there arrive through @cb: -EEXIST
 * (the name is in use, or cannot be proved free), -EINVAL (dm_restrict
 * refused: no user to run as, a bad chroot), ... with the DM DEAD and
 * nothing of it left. A stop before the keeper ran cancels the start
 * (-ECANCELED) and completes at once; a release then removes what the
 * steps made. */
LIBDM_EXPORT int libdm_dm_start_async(libdm_ctx *ctx, const libdm_dm_config *config,
                                      libdm_dm_done_fn *cb, void *userdata,
                                      libdm_dm **ret_dm);
LIBDM_EXPORT int libdm_dm_start(libdm_ctx *ctx, const libdm_dm_config *config,
                                libdm_dm **ret_dm);
/* Re-attaches to a recorded DM started by any process. -ENOENT if no record,
 * -ESRCH if its process is gone (the record then says how it ended), -ELOOP
 * or -EPERM if its directory or monitor socket was replaced (a symlink, not a
 * socket, or not ours): libdm never follows a planted path to a monitor. */
LIBDM_EXPORT int libdm_dm_attach(libdm_ctx *ctx, const char *name, libdm_dm **ret_dm);
/* Same, connecting to the monitor within @timeout_ms. If the process is alive
 * but its monitor does not answer (a hung or hostile DM), the DM is still
 * returned, in state BROKEN with libdm_dm_last_error() saying why, so that
 * libdm_dm_stop() can end it. */
LIBDM_EXPORT int libdm_dm_attach_timeout(libdm_ctx *ctx, const char *name, int timeout_ms,
                                         libdm_dm **ret_dm);
/* The same as an asynchronous operation: @cb gets 0 (ready: the state says
 * running, paused or incoming) or a negative errno with the DM BROKEN (its
 * process alive, its monitor held by a migration (-EBUSY), not answering
 * or gone away: stoppable through its pidfd). What needs no waiting fails
 * at once: no record (-ENOENT), process gone (-ESRCH), a planted directory
 * or monitor path (-ELOOP, -EPERM), no socket (-ENOENT); no handle then. */
LIBDM_EXPORT int libdm_dm_attach_async(libdm_ctx *ctx, const char *name, int timeout_ms,
                                       libdm_dm_done_fn *cb, void *userdata,
                                       libdm_dm **ret_dm);
/* Who talks to @name's monitor now: 1 with *ret_pid, *ret_note (e.g.
 * "migration") and *ret_command (its command line), each malloc'd or NULL
 * and optional, if a client holds it; 0 if free; or a negative errno. */
LIBDM_EXPORT int libdm_dm_monitor_holder(libdm_ctx *ctx, const char *name, int *ret_pid,
                                         char **ret_note, char **ret_command);
/* Attach flags. */
enum {
    /* Hand over a live DM whatever its monitor's state (missing, planted,
     * held by a migration, not answering), in state BROKEN, so that
     * libdm_dm_stop() can end it through its pidfd. */
    LIBDM_ATTACH_ANY_MONITOR = 1u << 0,
};
/* Same with @flags. Concurrent users of one DM's monitor queue (QEMU serves
 * one client at a time) until @timeout_ms, then -ETIMEDOUT naming the
 * holder; while a migration holds it: -EBUSY at once. */
LIBDM_EXPORT int libdm_dm_attach_flags(libdm_ctx *ctx, const char *name, int timeout_ms,
                                       unsigned flags, libdm_dm **ret_dm);

/* Error codes, one meaning each. A start that fails (libdm_dm_start(), the
 * callback of libdm_dm_start_async()) says which cause:
 *   -ENOENT      binary not found (set_qemu_path names nothing)
 *   -EACCES      not executable (no execute permission, a directory)
 *   -ENOEXEC     exec format: not a program this machine can run
 *   -EINVAL      bad argument: refused by libdm (a setter, start_async,
 *                dm_restrict) or by QEMU: it exited with status 1 before
 *                it was ready, QEMU's exit for an option or device it
 *                refuses (last_error ends with its log's tail)
 *   -ECHILD      exited early: it ended on its own before it was ready,
 *                with another status, or crashed (SIGSEGV, SIGABRT, ...)
 *   -ETIMEDOUT   timeout: not ready by the deadline (libdm then kills it)
 *   -ESRCH       killed: a signal libdm did not send ended it (for the other
 *                operations: the DM died while they waited)
 *   -ECONNRESET  its monitor failed while the process lived on (libdm kills it)
 *   -EPROTO      its monitor answered what a paused QEMU cannot
 *   -EEXIST (the name is taken), -ECANCELED (a stop came first), -EIO (its
 *   record or the start times of its processes could not be written or read)
 * libdm_dm_last_error() keeps the first cause of a failed operation: what
 * follows (the kill after a deadline, the end it caused) is appended after
 * "; ", never in its place. The cause of a DEAD DM is also structured:
 * libdm_dm_get_ended_by() and the getters after it.
 *
 * Results shared by every operation on a DM (async forms through @cb):
 * -ETIMEDOUT at its deadline; -ECANCELED when libdm_dm_stop() interrupts
 * it; -ESRCH when the DM dies meanwhile (also when its monitor resets
 * first: the operation then waits up to 200 ms for the exit to show);
 * -EBUSY if another operation runs on the DM (not query-status: it runs
 * alongside, see below; nor query_devices and apply_config: they queue
 * behind it). A pause or query-status that misses its deadline
 * marks the DM BROKEN (its monitor did not answer); a resume does not (it
 * may be waiting, with a monitor that answers, for an incoming migration
 * that is slow to complete).
 *
 * Guarded resume: sends "cont" only when the runstate allows it; while an
 * incoming migration is in progress, first waits until both the MIGRATION
 * event and query-migrate say "completed"; never sends "cont" after a failed
 * incoming migration. Running already: success, nothing sent. */
LIBDM_EXPORT int libdm_dm_resume_async(libdm_dm *dm, int timeout_ms,
                                       libdm_dm_done_fn *cb, void *userdata);
LIBDM_EXPORT int libdm_dm_resume(libdm_dm *dm, int timeout_ms);
LIBDM_EXPORT int libdm_dm_pause(libdm_dm *dm, int timeout_ms);
LIBDM_EXPORT int libdm_dm_pause_async(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb,
                                      void *userdata);
/* query-status; *ret_runstate is QEMU's runstate name (caller frees). */
LIBDM_EXPORT int libdm_dm_query_status(libdm_dm *dm, int timeout_ms, char **ret_runstate);
/* Async query-status: on success libdm_dm_get_runstate() has the answer.
 * A query is read-only: while another operation runs on the DM (a stop,
 * a migration phase, ...) it runs alongside it, on the same monitor,
 * instead of -EBUSY, with its own deadline; its callback is queued with
 * the operations' (the order they ended in), and a release drops it with
 * the libdm_dm_set_op_destroy notification. Such a query only sets the
 * runstate (the DM's state stays the running operation's to move), never
 * marks the DM BROKEN and leaves libdm_dm_last_error() to that operation:
 * -ETIMEDOUT at its deadline, -ESRCH if the DM died, -ENOTCONN if the
 * monitor closed (a stop's end) first. With no operation running it is
 * an operation as before. The blocking form likewise. */
LIBDM_EXPORT int libdm_dm_query_status_async(libdm_dm *dm, int timeout_ms, libdm_dm_done_fn *cb,
                                             void *userdata);

/* --- events for the host ---
 * A DM's state changes (PAUSED -> RUNNING, -> BROKEN, -> DEAD, ...) are
 * reported to one callback per handle, always from the loop, never from
 * inside a libdm call, in the order they happened. DEAD carries the wait
 * status and why (a sentence; NULL for a stop that went as asked). The
 * callback may release the DM. QEMU's own events: libdm_dm_subscribe()
 * below (per handle, whatever its connection), or listeners with
 * libdm_qmp_add_event_listener() on libdm_dm_get_qmp(dm) (that connection
 * only); both sit beside libdm's own and displace nothing. */
/* Who ended a DM (DEAD), beside the sentence (libdm_dm_get_ended_by). */
typedef enum libdm_dm_end_by {
    LIBDM_END_NONE,        /* not dead, or nothing ran (a start refused before) */
    LIBDM_END_SELF,        /* it exited, or crashed (SIGSEGV, SIGABRT, SIGBUS, SIGILL,
                            * SIGFPE, SIGSYS), on its own */
    LIBDM_END_STOP,        /* libdm_dm_stop(): quit, or the signals it sends */
    LIBDM_END_TIMEOUT,     /* libdm killed it: its start missed the deadline */
    LIBDM_END_FAILED,      /* libdm killed it: its start failed for another reason */
    LIBDM_END_EXTERNAL,    /* a signal libdm did not send (SIGKILL from outside...) */
    LIBDM_END_UNKNOWN,     /* ended; how is not known (no wait status recorded,
                            * and a kernel before 6.15 cannot say) */
} libdm_dm_end_by;
LIBDM_EXPORT const char *libdm_dm_end_by_to_string(libdm_dm_end_by by);

typedef struct libdm_dm_event {
    libdm_dm_state old_state;
    libdm_dm_state new_state;
    int exit_status;       /* DEAD: the wait status, -1 if unknown */
    const char *cause;     /* DEAD, BROKEN: why, or NULL (a stop that went as asked);
                            * never NULL for BROKEN */
    /* DEAD only (added in issue 19; 0 / NULL otherwise): */
    libdm_dm_end_by ended_by;
    int exit_code;         /* its exit code, -1 if it did not exit (or unknown) */
    int term_signal;       /* the signal that ended it, 0 if none (or unknown) */
    const char *log_tail;  /* the end of its log, printable, or NULL */
} libdm_dm_event;
typedef void libdm_dm_event_fn(libdm_dm *dm, const libdm_dm_event *event, void *userdata);
/* NULL @fn unregisters; pending notifications are then dropped. @fn runs
 * from the loop only, never inside a blocking call (the DM's own included:
 * a change during libdm_dm_resume() is delivered after it returns). */
LIBDM_EXPORT int libdm_dm_set_event_callback(libdm_dm *dm, libdm_dm_event_fn *fn,
                                             void *userdata);

/* QEMU's own events of a DM, for the host (issue 19): @cb runs with each
 * event named @event (NULL: every event) and its "data" member (NULL if
 * none; borrowed for the call). The subscription belongs to the handle,
 * not to a monitor connection: it may be made before the DM's monitor is
 * connected (right after start_async or attach_async), and whatever
 * connection the handle gets is the one it hears. A new handle (attach,
 * in this or another process) subscribes again.
 *
 * Delivered from the loop only, never inside a libdm call (a blocking
 * call of any object, this DM's too, holds them back until it returns),
 * in order, to subscribers in the order they subscribed; a subscription
 * hears only events that came after it was made. The DM is untrusted:
 * its events arrive through the bounded QMP reader, and at most 1024 wait
 * undelivered per DM (then one is dropped, with a warning).
 *
 * sd-bus slot manners: with @ret NULL the subscription is floating (the
 * handle owns it); else *@ret is the caller's, ended with
 * libdm_dm_subscription_free() (also from any callback, its own
 * included). @destroy (may be NULL) runs exactly once with @userdata: at
 * that free, or when the handle is released or its context freed, whichever
 * comes first; a subscription whose handle went away stays the caller's
 * memory until freed. -EINVAL: no @cb, or an event name longer than 128;
 * -ESHUTDOWN: the context was freed. */
typedef struct libdm_dm_subscription libdm_dm_subscription;
typedef void libdm_dm_qmp_event_fn(libdm_dm *dm, const char *event, const libdm_json *data,
                                   void *userdata);
LIBDM_EXPORT int libdm_dm_subscribe(libdm_dm *dm, const char *event, libdm_dm_qmp_event_fn *cb,
                                    void *userdata, libdm_destroy_fn *destroy,
                                    libdm_dm_subscription **ret);
/* Ends @sub (its callback never runs again; its destroy runs now unless it
 * already ran); NULL is a no-op. Returns NULL. */
LIBDM_EXPORT libdm_dm_subscription *libdm_dm_subscription_free(libdm_dm_subscription *sub);
/* quit, wait for exit until @timeout_ms, then SIGTERM, then SIGKILL (@force:
 * SIGKILL at once). The DM is reaped, its socket, directory and record are
 * removed. Safe to call twice; works on a BROKEN DM. */
LIBDM_EXPORT int libdm_dm_stop(libdm_dm *dm, int force, int timeout_ms);
LIBDM_EXPORT int libdm_dm_stop_async(libdm_dm *dm, int force, int timeout_ms,
                                     libdm_dm_done_fn *cb, void *userdata);
/* Drops the handle (QMP drained and closed); the DM keeps running. An
 * operation in progress or a callback not yet run is dropped: its
 * userdata's destroy function (libdm_dm_set_op_destroy) runs instead. */
LIBDM_EXPORT libdm_dm *libdm_dm_release(libdm_dm *dm);
/* The userdata of the operation just started on @dm (the last *_async call
 * that returned 0) gets @fn, called once with it if the operation's
 * callback never runs: the DM is released, or its context freed, first
 * (sd-bus slots' destroy callback). After the callback ran, @fn is not
 * called. -ENOENT if @dm has no operation whose callback is still due. */
LIBDM_EXPORT int libdm_dm_set_op_destroy(libdm_dm *dm, libdm_destroy_fn *fn);

/* The host's own pointer on the handle (NULL until set): libdm never uses
 * it; it stays until changed or the handle is released. set returns the
 * previous one. */
LIBDM_EXPORT void *libdm_dm_set_userdata(libdm_dm *dm, void *userdata);
LIBDM_EXPORT void *libdm_dm_get_userdata(const libdm_dm *dm);

/* The DM's monitor connection (READY, or NULL if there is none). Borrowed. */
LIBDM_EXPORT libdm_qmp *libdm_dm_get_qmp(libdm_dm *dm);
LIBDM_EXPORT libdm_dm_state libdm_dm_get_state(const libdm_dm *dm);
LIBDM_EXPORT const char *libdm_dm_state_to_string(libdm_dm_state state);
LIBDM_EXPORT const char *libdm_dm_get_name(const libdm_dm *dm);
LIBDM_EXPORT uint32_t libdm_dm_get_domid(const libdm_dm *dm);
LIBDM_EXPORT int libdm_dm_get_pid(const libdm_dm *dm);
LIBDM_EXPORT const char *libdm_dm_get_qmp_path(const libdm_dm *dm);
LIBDM_EXPORT const char *libdm_dm_get_profile(const libdm_dm *dm);
/* The machine type and guest memory it was started with (recorded, so a
 * migration destination can be started alike); NULL / 0 if unknown. */
LIBDM_EXPORT const char *libdm_dm_get_machine(const libdm_dm *dm);
LIBDM_EXPORT uint64_t libdm_dm_get_memory_mb(const libdm_dm *dm);
/* The configuration document it was started with (libdm_dm_config_to_doc(),
 * kept in its run directory; *ret_text malloc'd). -ENOENT: none (started
 * before it was kept, or a configuration that cannot travel). */
LIBDM_EXPORT int libdm_dm_get_config_doc(const libdm_dm *dm, char **ret_text);
/* The confinement in force, e.g. "uid 65534 gid 65534, chroot /run/libdm/x/root,
 * ns mnt+ipc, rlimits, no_new_privs, seccomp qemu-sandbox" ("none" when not
 * restricted); NULL if unknown (attached to an old record). */
LIBDM_EXPORT const char *libdm_dm_get_confinement(const libdm_dm *dm);
/* The last runstate QMP reported (e.g. "prelaunch"), or NULL. */
LIBDM_EXPORT const char *libdm_dm_get_runstate(const libdm_dm *dm);
/* Once DEAD: the wait status (as waitpid), or -1 if unknown. */
LIBDM_EXPORT int libdm_dm_get_exit_status(const libdm_dm *dm);
/* Once DEAD, the structured cause beside last_error's sentence: who ended
 * it (LIBDM_END_NONE while not dead), its exit code (-1: it did not exit,
 * or unknown), the signal that ended it (0: none, or unknown), and the
 * last lines of its log (printable: control characters shown as '?', lines
 * joined by '|'; NULL if there was none). The same as the DEAD event's. */
LIBDM_EXPORT libdm_dm_end_by libdm_dm_get_ended_by(const libdm_dm *dm);
LIBDM_EXPORT int libdm_dm_get_exit_code(const libdm_dm *dm);
LIBDM_EXPORT int libdm_dm_get_term_signal(const libdm_dm *dm);
LIBDM_EXPORT const char *libdm_dm_get_log_tail(const libdm_dm *dm);
/* A sentence naming the DM and why its last operation failed, with the tail
 * of its log when it died; NULL if nothing failed. */
LIBDM_EXPORT const char *libdm_dm_last_error(const libdm_dm *dm);

/* --- devices after start (libdm/devices.c) ---
 * What QEMU cannot take on its command line: the VNC password (set_password
 * over QMP). Call once the DM is ready, with the configuration it was
 * started from; 0 if there is nothing to do. */
LIBDM_EXPORT int libdm_dm_apply_config(libdm_dm *dm, const libdm_dm_config *config,
                                       int timeout_ms);
/* The devices as the running DM reports them: {"serial": [{"id", "pty"?,
 * "filename"}], "vnc": {"host", "service", "auth"} (absent when off),
 * "nics": [{"devid", "mac", "model", "ifname", "bridge"?}] (recorded)}.
 * query-chardev and query-vnc; *ret freed with libdm_json_free(). */
LIBDM_EXPORT int libdm_dm_query_devices(libdm_dm *dm, int timeout_ms, libdm_json **ret);
/* DM operations, queued instead of -EBUSY (issue 19): while another
 * operation runs (a resume, a migration phase...), the call is queued
 * behind it and begins from the loop once it ended, in the order called,
 * with its deadline counted from then; -EBUSY only while a stop runs. A
 * queued call ends with -ESRCH (or -ENOTCONN) if the DM dies or its
 * monitor goes first; release drops it with the libdm_dm_set_op_destroy
 * notification, which applies to a queued call as to a running one. Each
 * call sends at most its first monitor command and returns; @cb runs from
 * the loop. The blocking forms above wait for these (-EDEADLK inside a
 * callback). */
LIBDM_EXPORT int libdm_dm_apply_config_async(libdm_dm *dm, const libdm_dm_config *config,
                                             int timeout_ms, libdm_dm_done_fn *cb,
                                             void *userdata);
LIBDM_EXPORT int libdm_dm_query_devices_async(libdm_dm *dm, int timeout_ms,
                                              libdm_dm_done_fn *cb, void *userdata);
/* The answer of the last successful libdm_dm_query_devices_async() (as
 * libdm_dm_query_devices() gives it), owned by @dm; NULL if none. */
LIBDM_EXPORT const libdm_json *libdm_dm_get_devices(const libdm_dm *dm);
/* The recorded NICs: "DEVID IFNAME MAC MODEL BRIDGE" per NIC ('-' for none),
 * separated by ';'; NULL if none were recorded. */
LIBDM_EXPORT const char *libdm_dm_get_nics(const libdm_dm *dm);

/* --- records --- */
typedef struct libdm_dm_info {
    char *name;
    uint32_t domid;
    int pid;
    int alive;          /* the recorded process still exists (start time checked) */
    char *qmp_socket;
    char *profile;
    char *state;        /* as last recorded */
    int exit_status;    /* wait status if the keeper recorded an exit, else -1 */
    /* A name whose record is missing or unreadable is listed too (a record
     * never hides a DM: issue 18): @state "unreadable" or "no-record",
     * with only what the run directory proves (@domid: the domain its
     * claim holds, @alive: its claim is held). */
    int record_error;   /* 0; -errno reading the record (-ENOENT: none) */
    int claimed;        /* its name's claim is held (a keeper or a start), if
                         * record_error; else 0 */
    int keeper_pid;     /* the claim's holder as the kernel proves it (its lock),
                         * 0 if unknown; only if record_error */
} libdm_dm_info;

LIBDM_EXPORT int libdm_dm_list(libdm_ctx *ctx, libdm_dm_info **ret_infos, size_t *ret_count);
LIBDM_EXPORT void libdm_dm_info_free(libdm_dm_info *infos, size_t count);
/* Removes the record and directory of a DM whose process is gone; also a
 * run directory without record (a starter killed between its claim and its
 * first record) once nobody holds its claim. -ENOENT if there is nothing
 * of that name, -EBUSY if it is alive or its claim is held (a start in
 * progress). */
LIBDM_EXPORT int libdm_dm_forget(libdm_ctx *ctx, const char *name);
/* Ends the DM of @name through its keeper, for a DM whose record cannot
 * be read (issue 18, item 8): SIGKILL to the process holding the name's
 * claim, proven by its lock (a pidfd, never a pid read from a file); the
 * keeper takes its DM with it. Then libdm_dm_forget() cleans up once the
 * claim is free. -ESRCH nobody holds the claim, -ENOLCK it is held by a
 * process that cannot be proven (a start in progress), -EAGAIN the holder
 * changed meanwhile. */
LIBDM_EXPORT int libdm_dm_kill_keeper(libdm_ctx *ctx, const char *name);

/* --- the same, asynchronous (issue 19) ---
 * Each call only checks its arguments and returns; the work runs from the
 * loop in steps of one or two file operations (list: one record per
 * dispatch, so a thousand records never block the loop) and @cb runs from
 * the loop, never inside the call. If the context is freed first, @destroy
 * (may be NULL) runs with @userdata instead of @cb. The blocking forms
 * above run the same steps at once (they are allowed inside a callback).
 * A record whose lock another writer holds is tried again every
 * millisecond from the loop, for 5 s at most, then -EBUSY; the blocking
 * forms say -EBUSY at once. Forget never reports success with the record
 * left. */
typedef void libdm_ctx_done_fn(libdm_ctx *ctx, int status, void *userdata);
/* @infos (NULL on error) is the callback's: free it with libdm_dm_info_free(). */
typedef void libdm_dm_list_fn(libdm_ctx *ctx, int status, libdm_dm_info *infos, size_t count,
                              void *userdata);
LIBDM_EXPORT int libdm_dm_list_async(libdm_ctx *ctx, libdm_dm_list_fn *cb, void *userdata,
                                     libdm_destroy_fn *destroy);
LIBDM_EXPORT int libdm_dm_forget_async(libdm_ctx *ctx, const char *name, libdm_ctx_done_fn *cb,
                                       void *userdata, libdm_destroy_fn *destroy);
/* @status as libdm_dm_monitor_holder() returns; @pid, @note and @command
 * (borrowed for the callback, NULL if unknown) when it is 1. */
typedef void libdm_dm_holder_fn(libdm_ctx *ctx, int status, int pid, const char *note,
                                const char *command, void *userdata);
LIBDM_EXPORT int libdm_dm_monitor_holder_async(libdm_ctx *ctx, const char *name,
                                               libdm_dm_holder_fn *cb, void *userdata,
                                               libdm_destroy_fn *destroy);

#ifdef __cplusplus
}
#endif
#endif
