# The library. libdm-core.la holds every object (tests link it to reach the
# internals); libdm.la exports only the version script's symbols.
noinst_LTLIBRARIES += libdm-core.la
libdm_core_la_SOURCES = \
	libdm/internal.h \
	libdm/ctx-internal.h libdm/ctx.c libdm/log.c libdm/util.c libdm/loop.c \
	libdm/argv-elem.c libdm/json.c libdm/qmp-decoder.c libdm/qmp.c libdm/qmp-core.c \
	libdm/qmp-event.c \
	libdm/qmp-call.c libdm/qmp-private.h libdm/qmp-redact.c libdm/qmp-internal.h \
	libdm/keeper-proto.c libdm/keeper-proto.h libdm/spawn.c libdm/spawn-internal.h \
	libdm/rundir.c libdm/rundir-internal.h \
	libdm/dm.c libdm/dm-error.c libdm/dm-internal.h libdm/dm-private.h libdm/dm-end.c libdm/dm-prepare.c \
	libdm/dm-start.c libdm/dm-ops.c libdm/dm-attach.c libdm/migrate.c libdm/migrate-sync.c \
	libdm/restrict.c libdm/restrict-internal.h \
	libdm/job.c libdm/job-internal.h libdm/dm-list.c libdm/dm-devices.c \
	libdm/dm-userdata.c libdm/dm-events.c libdm/dm-query.c xenstore-glue/store-util.c
libdm_core_la_LIBADD = $(DEPS_LIBS)

lib_LTLIBRARIES += libdm.la
libdm_la_SOURCES =
libdm_la_LIBADD = libdm-core.la $(DEPS_LIBS)
libdm_la_LDFLAGS = -version-info $(LIBDM_LT_VERSION) \
	-Wl,--version-script=$(srcdir)/libdm/libdm.map
EXTRA_libdm_la_DEPENDENCIES = $(srcdir)/libdm/libdm.map
EXTRA_DIST += libdm/libdm.map libdm/libdm.pc.in

libdminclude_HEADERS += \
	libdm/include/libdm/libdm.h libdm/include/libdm/common.h \
	libdm/include/libdm/ctx.h libdm/include/libdm/json.h \
	libdm/include/libdm/qmp.h libdm/include/libdm/dm.h \
	libdm/include/libdm/migrate.h
