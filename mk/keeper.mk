# libdm-keeper: the parent of each device model (tools/keeper.c).
libexec_PROGRAMS += tools/libdm-keeper
tools_libdm_keeper_SOURCES = tools/keeper.c
tools_libdm_keeper_LDADD = libdm-core.la $(DEPS_LIBS)
