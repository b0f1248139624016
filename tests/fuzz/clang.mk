# GNU make rules for the libFuzzer harnesses: clang with
# -fsanitize=fuzzer,address,undefined, apart from the configured build.
# tests/fuzz/Makefile's fuzz-build runs this with every variable below set
# from the configured tree, so it builds from any configured tree, in place
# or VPATH.  (A second configure in a _build-fuzz directory cannot: automake
# refuses a VPATH build of a source tree that is configured in place.)
#
# The core's library sources (core/Makefile's libvcgcore_la_SOURCES, the
# code the daemon runs) and the generated protobuf-c sources are compiled
# again with coverage instrumentation into one archive; each harness links
# its fuzz_NAME.o against it, taking only the objects it uses.

# Set by tests/fuzz/Makefile: top_srcdir top_builddir OUT FUZZ_CC VERSION
# CORE_SOURCES DEPS_CFLAGS DEPS_LIBS QUIC_CFLAGS QUIC_LIBS NAMES
OBJ := $(OUT)/obj
BIN := $(OUT)/bin
SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
CFLAGS_F := -g -O1 -std=gnu11 -Wall -Wextra -Wno-unused-parameter $(SAN) -fsanitize=fuzzer-no-link
# No plugin directory exists in the fuzz build (fuzz_config loads none).
CORE_CPPFLAGS := -I$(top_srcdir)/core -I$(top_srcdir)/core/include -I$(top_srcdir)/core/util \
	-I$(top_builddir)/proto -DVCG_VERSION='"$(VERSION)"' -DVCG_PLUGIN_DIR='"$(OUT)/no-plugins"'
HARNESS_CPPFLAGS := $(CORE_CPPFLAGS) -I$(top_srcdir)/tests/unit -I$(top_srcdir)/tests/fuzz \
	-I$(top_srcdir)/plugins/webtransport

core_o := $(patsubst %.c,$(OBJ)/core/%.o,$(filter %.c,$(CORE_SOURCES)))
proto_o := $(patsubst $(top_builddir)/proto/%.c,$(OBJ)/proto/%.o,$(wildcard $(top_builddir)/proto/*.pb-c.c))
# The harnesses' own helper and the WebTransport plugin's pure parsers.
extra_o := $(OBJ)/token.o $(if $(QUIC_LIBS),$(OBJ)/wt/h3.o $(OBJ)/wt/qpack.o)

all: $(patsubst %,$(BIN)/fuzz_%,$(NAMES))

$(OBJ)/core/%.o: $(top_srcdir)/core/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CORE_CPPFLAGS) $(CFLAGS_F) $(DEPS_CFLAGS) -MMD -c -o $@ $<
$(OBJ)/proto/%.o: $(top_builddir)/proto/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CFLAGS_F) $(DEPS_CFLAGS) -MMD -c -o $@ $<
$(OBJ)/wt/%.o: $(top_srcdir)/plugins/webtransport/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) -I$(top_srcdir)/core/include $(CFLAGS_F) $(QUIC_CFLAGS) -MMD -c -o $@ $<
# The harnesses' own comparisons guide nothing: without their trace-cmp
# callbacks (a third of fuzz_h3's time) the parsers get the cycles.
$(OBJ)/%.o: $(top_srcdir)/tests/fuzz/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(HARNESS_CPPFLAGS) $(CFLAGS_F) -fno-sanitize-coverage=trace-cmp $(DEPS_CFLAGS) \
	  $(QUIC_CFLAGS) -MMD -c -o $@ $<

$(OBJ)/libvcgcore-fuzz.a: $(core_o) $(proto_o)
	rm -f $@ && ar rcs $@ $^
$(OBJ)/libfuzzextra.a: $(extra_o)
	rm -f $@ && ar rcs $@ $^

$(BIN)/fuzz_%: $(OBJ)/fuzz_%.o $(OBJ)/libfuzzextra.a $(OBJ)/libvcgcore-fuzz.a
	@mkdir -p $(@D)
	$(FUZZ_CC) -fsanitize=fuzzer $(SAN) -o $@ $^ $(DEPS_LIBS) $(QUIC_LIBS)

.PHONY: all
.SECONDARY:
-include $(wildcard $(OBJ)/*.d $(OBJ)/*/*.d)
