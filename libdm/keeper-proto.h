/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control channel between libdm and libdm-keeper: a SOCK_SEQPACKET
 * socketpair, one short text message per packet.
 *
 *   keeper -> libdm   "pid PID START"  (+ the DM's pidfd by SCM_RIGHTS)
 *                     "exit STATUS"    (wait status; the keeper exits next)
 *                     "error ERRNO TEXT" (exec failed, ...: the errno, positive,
 *                                      then the sentence)
 *   libdm -> keeper   "autokill 1|0"   (kill the DM if this channel closes)
 *                     "kill"           (SIGKILL the DM now)
 *
 * The channel closing is itself a message: the controller is gone.
 * Fds passed to the keeper at exec: 0 /dev/null, 1 and 2 the DM's log,
 * 3 the QMP listening socket (QEMU's -chardev ...,fd=3), 4 this channel,
 * 5 the name's owner.lock (flock held: the keeper holds the claim on the
 * name for the DM's whole life), 6 the DM's run directory.
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

/* Sends @msg (and @fd if >= 0). 0 or negative errno. */
int libdm__kp_send(int sock, const char *msg, int fd);
/* Receives one message into @buf (NUL-terminated); *ret_fd gets a passed fd
 * (O_CLOEXEC) or -1. Returns the length, 0 on EOF, negative errno. */
int libdm__kp_recv(int sock, char *buf, size_t len, int *ret_fd);

#endif
