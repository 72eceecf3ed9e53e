# libdm-keeper: the parent of each device model (tools/keeper.c).
libexec_PROGRAMS += tools/libdm-keeper
# keeper-restrict.c: dm_restrict applied in QEMU's child before exec (the
# only part of libdm that links libseccomp).
tools_libdm_keeper_SOURCES = tools/keeper.c tools/keeper-restrict.c tools/keeper-restrict.h \
	tools/keeper-log.c tools/keeper-log.h
tools_libdm_keeper_CFLAGS = $(AM_CFLAGS) $(LIBSECCOMP_CFLAGS)
tools_libdm_keeper_LDADD = libdm-core.la $(DEPS_LIBS) $(LIBSECCOMP_LIBS)
