/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control channel between libdm and libdm-keeper: a SOCK_SEQPACKET
 * socketpair, one short text message per packet.
 *
 *   keeper -> libdm   "pid PID START"  (+ the DM's pidfd by SCM_RIGHTS: libdm
 *                                      looks whether it ended, then closes it)
 *                     "exit STATUS"    (wait status; the keeper exits next)
 *                     "error ERRNO TEXT" (exec failed, ...: the errno, positive,
 *                                      then the sentence)
 *   libdm -> keeper   "autokill 1|0"   (kill the DM if this channel closes)
 *                     "kill"           (SIGKILL the DM now)
 *                     "term"           (SIGTERM the DM now: stop's second step)
 *                     "monitor"        (+ the DM's monitor.lock, flock held
 *                                      for the controller: the keeper keeps
 *                                      it until this channel closes, or to
 *                                      its exit under autokill)
 *
 * The channel closing is itself a message: the controller is gone.
 * Fds passed to the keeper at exec: 0 /dev/null, 1 and 2 the DM's log,
 * 3 the QMP listening socket (QEMU's -chardev ...,fd=3), 4 this channel,
 * 5 the name's owner.lock (flock held: the keeper holds the claim on the
 * name for the DM's whole life), 6 the DM's run directory.
 *
 * The helper (issue 23): `libdm-keeper --helper`, exec'd once per context,
 * forks the keepers, so that a DM costs a fork rather than an exec. Its fds:
 * 0-2 /dev/null, 3 a SOCK_SEQPACKET socket to libdm.
 *   libdm -> helper   the keeper's argv, NUL-separated, with the keeper's
 *                     fds 1.. (above) by SCM_RIGHTS, in that order
 *   helper -> libdm   "ready" (before it reads any request)
 *                     "error TEXT" (from libdm's child: the exec failed)
 * The helper forks a keeper per request (skipped if libdm has closed that
 * keeper's channel) in a new PID namespace when it may, and reaps it. The
 * keeper, run with --hello, first sends "keeper PID" with its own pidfd
 * over its channel. The helper exits once libdm closed its socket and its
 * last keeper has exited; its death ends no keeper.
 */
#ifndef LIBDM_KEEPER_PROTO_H
#define LIBDM_KEEPER_PROTO_H

#include <stddef.h>

#define LIBDM__KEEPER_QMP_FD 3
#define LIBDM__KEEPER_CTL_FD 4
#define LIBDM__KEEPER_OWNER_FD 5
#define LIBDM__KEEPER_RUNDIR_FD 6
#define LIBDM__KEEPER_NFDS 7
#define LIBDM__KEEPER_MSG_MAX 512
#define LIBDM__HELPER_FD 3
#define LIBDM__HELPER_MSG_MAX (128 * 1024)
#define LIBDM__HELPER_MAX_FDS 32

/* Sends @msg (and @fd if >= 0). 0 or negative errno. */
int libdm__kp_send(int sock, const char *msg, int fd);
/* Receives one message into @buf (NUL-terminated); *ret_fd gets a passed fd
 * (O_CLOEXEC) or -1. Returns the length, 0 on EOF, negative errno. */
int libdm__kp_recv(int sock, char *buf, size_t len, int *ret_fd);

#endif
