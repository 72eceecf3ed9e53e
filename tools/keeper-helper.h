/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libdm-keeper's two modes: a keeper (keeper.c), or the per-context helper
 * that forks keepers (keeper-helper.c). */
#ifndef LIBDM_KEEPER_HELPER_H
#define LIBDM_KEEPER_HELPER_H

int keeper_main(int argc, char **argv);
int keeper_helper_main(void);

#endif
