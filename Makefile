# vlp — see README.md.  `make` builds build/release; `make test` installs what
# is missing (scripts/deps.sh), builds the release and the ASan+UBSan variants
# and runs every test in both; `make bench` runs the benchmarks;
# `make install PREFIX=... [DESTDIR=...]` installs the tool, the libraries,
# the header, vlp.pc and the data (share/vlp), `make uninstall` removes them.
MODE ?= release
CC ?= cc
# One build for every CPU of the architecture: the library and the tool are
# compiled for its baseline (ARCH; ARCH=native builds for this machine
# alone), and the kernels of src/ops/levels once per instruction-set level
# of LEVELS, each copy with that level's -march and its own names
# (eltwise_avx2, ...); src/core/cpu.c picks one at run time, VLP_CPU lowers it.
MACHINE := $(shell $(CC) -dumpmachine 2>/dev/null)
ifneq ($(filter x86_64%,$(MACHINE)),)
  BASE_ARCH := x86-64
  LEVELS := portable avx2 avx512
  LEVEL_MARCH_avx2 := x86-64-v3
  LEVEL_MARCH_avx512 := x86-64-v4
else ifneq ($(filter aarch64%,$(MACHINE)),)
  BASE_ARCH := armv8-a
  LEVELS := portable
  # GCC 12.2 for aarch64 crashes (ICE in vect_transform_reduction) on the
  # tests' fmax reductions; the library compiles, the tests need no speed
  TEST_CFLAGS := -fno-tree-vectorize
else
  BASE_ARCH :=
  LEVELS := portable
endif
LEVEL_MARCH_portable := $(BASE_ARCH)
ARCH ?= $(BASE_ARCH)
# BUILDROOT: where builds go (build/arm64 for the cross build of test-arm64)
BUILDROOT ?= build
BUILD := $(BUILDROOT)/$(MODE)
CONFIG := $(BUILDROOT)/config.mk

SRC := $(wildcard src/core/*.c src/ops/*.c src/loss/*.c src/model/*.c src/io/*.c src/train/*.c src/train/objectives/*.c src/data/*.c src/eval/*.c src/api/*.c src/dist/*.c src/curate/*.c src/adapt/*.c)
LEVEL_SRC := $(wildcard src/ops/levels/*.c)
LEVEL_OBJ := $(foreach l,$(LEVELS),$(LEVEL_SRC:%.c=%.$(l).o))
OBJ := $(SRC:%.c=$(BUILD)/%.o) $(LEVEL_OBJ:%=$(BUILD)/%)
TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
TEST_SUPPORT := $(wildcard tests/support/*.c)
TEST_SCRIPTS := $(patsubst tests/%.sh,$(BUILD)/tests/%,$(wildcard tests/test_*.sh))
# fuzz targets (tests/fuzz/fuzz_NAME.c): with replay.c in every build (the
# corpora replayed by tests/test_fuzz_replay.sh), with libFuzzer by `make fuzz`
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(filter-out tests/fuzz/fuzz_support.c,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_REPLAY := $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz/replay_%)
FUZZ_SECONDS ?= 60
# helpers the shell tests run (tests/tools/*.c: one program each)
SHIMS := faultshim swapshim
TEST_TOOLS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(filter-out $(SHIMS:%=tests/tools/%.c),$(wildcard tests/tools/*.c))) \
              $(SHIMS:%=$(BUILD)/tests/tools/lib%.so)
# programs over include/vlp.h alone (compiled without -Isrc), run by the tests
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
BENCHES := $(BUILD)/bench/ops $(BUILD)/bench/gemm $(BUILD)/bench/dist $(BUILD)/bench/data $(BUILD)/bench/embed $(BUILD)/bench/train
TOOL_SUPPORT := tools/blas_env.c

ifeq ($(MODE),asan)
  # float-cast-overflow: -fsanitize=undefined leaves it out (a NaN or huge double cast to int)
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all
else ifeq ($(MODE),fuzz)
  # the fuzz targets' library: clang, coverage for libFuzzer, sanitizers; clang's
  # implicit-integer-truncation too (a value changed when a wider integer is
  # stored into a narrower one without a cast); not the rest of -fsanitize=integer, whose
  # unsigned wrap and sign-change checks flag the hashes' and sizes' intended
  # arithmetic
  CC := clang
  OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow,implicit-integer-truncation,fuzzer-no-link -fno-sanitize-recover=all
else ifeq ($(MODE),release)
  OPT := -O3 -g $(if $(ARCH),-march=$(ARCH))
else
  $(error MODE must be release or asan, not '$(MODE)')
endif

-include $(CONFIG)
ifeq ($(MODE),fuzz)
  OMP_FLAGS := # the parsers are single-threaded; clang's OpenMP runtime is not needed
endif

# the version, written once: include/vlp.h
VERSION := $(shell sed -n 's/^\#define VLP_VERSION_STRING "\(.*\)"/\1/p' include/vlp.h)
MAJOR := $(firstword $(subst ., ,$(VERSION)))
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share/vlp
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# the Python package (python/vlp) goes where the prefix's python3 looks:
# PREFIX/lib/python3.X/dist-packages (on Debian, in sys.path for /usr/local)
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
PYTHONDIR ?= $(LIBDIR)/python$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo 3)/dist-packages
SONAME := libvlp.so.$(MAJOR)
# what vlp ships beside the code: model configs, the BPE merges, templates
DATA := $(wildcard configs/*.json) vocab/bpe_simple_vocab_16e6.txt.gz vocab/README.md \
        $(wildcard templates/*.txt) templates/README.md scripts/get-data.sh
PIC_OBJ := $(SRC:%.c=$(BUILD)/pic/%.o) $(LEVEL_OBJ:%=$(BUILD)/pic/%)
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(OMP_FLAGS) $(BLAS_CFLAGS) $(JSON_CFLAGS) $(IMG_CFLAGS) $(TEXT_CFLAGS) $(MPI_CFLAGS) $(DEFS) -Iinclude -Isrc -MMD -MP $(CFLAGS)
LDLIBS_ALL = $(BLAS_LIBS) $(JSON_LIBS) $(IMG_LIBS) $(TEXT_LIBS) $(MPI_LIBS) $(OMP_FLAGS) -lm $(LDFLAGS)

.PHONY: all lib shared tests benches test test-release test-asan test-arm64 test-cpus bench demo deps clean ref check-checkpoint \
        install uninstall fuzz fuzz-long fuzz-build FORCE
all: $(CONFIG) lib $(BUILD)/vlp tests benches

$(CONFIG): scripts/probe.sh
	@mkdir -p $(BUILDROOT)
	@CC=$(CC) sh scripts/probe.sh $@

lib: $(BUILD)/libvlp.a
shared: $(BUILD)/libvlp.so.$(VERSION)
# the release build's tests load the shared library into python3 too (tests/test_python.sh)
tests: $(TESTS) $(TEST_SCRIPTS) $(TEST_TOOLS) $(FUZZ_REPLAY) $(EXAMPLES) $(BUILD)/vlp \
       $(if $(filter release,$(MODE)),$(BUILD)/libvlp.so.$(VERSION))
benches: $(BENCHES)

# the flags the objects were compiled with: a change (ARCH, CFLAGS, CC)
# rebuilds them, rather than linking objects built for another CPU
$(BUILD)/flags.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(CC) $(CFLAGS_ALL) $(LEVEL_CFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS_ALL) $(LEVEL_CFLAGS)' > $@

$(BUILD)/%.o: %.c $(CONFIG) $(BUILD)/flags.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/pic/%.o: %.c $(CONFIG) $(BUILD)/flags.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fPIC -c $< -o $@

# a level's copy of a kernel file: its -march after the build's, so it wins.
# -fno-trapping-math lets GCC turn the selects of fastmath.h into blends at
# AVX2 (without it only AVX-512's masks vectorise GELU), -fno-math-errno
# makes sqrtf an instruction; neither changes a result (vlp reads no FP
# exception flags and no errno from libm)
LEVEL_CFLAGS := -fno-trapping-math -fno-math-errno
define level_rule
LEVEL_CC_$(1) = $$(CC) $$(CFLAGS_ALL) $$(LEVEL_CFLAGS) $$(if $$(LEVEL_MARCH_$(1)),-march=$$(LEVEL_MARCH_$(1))) -DVLP_LEVEL=$(1)
$(BUILD)/src/ops/levels/%.$(1).o: src/ops/levels/%.c $(CONFIG) $(BUILD)/flags.stamp
	@mkdir -p $$(dir $$@)
	$$(LEVEL_CC_$(1)) -c $$< -o $$@
$(BUILD)/pic/src/ops/levels/%.$(1).o: src/ops/levels/%.c $(CONFIG) $(BUILD)/flags.stamp
	@mkdir -p $$(dir $$@)
	$$(LEVEL_CC_$(1)) -fPIC -c $$< -o $$@
endef
$(foreach l,$(LEVELS),$(eval $(call level_rule,$(l))))

# The data directory of the prefix is compiled in as the last place the
# library looks (src/core/datadir.h); the stamp rebuilds it when PREFIX changes.
$(BUILD)/prefix.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(DATADIR)' | cmp -s - $@ || echo '$(DATADIR)' > $@
$(BUILD)/src/core/datadir.o $(BUILD)/pic/src/core/datadir.o: $(BUILD)/prefix.stamp
$(BUILD)/src/core/datadir.o $(BUILD)/pic/src/core/datadir.o: DEFS = -DVLP_INSTALL_DATADIR='"$(DATADIR)"'

$(BUILD)/libvlp.a: $(OBJ)
	ar rcs $@ $^

# The shared library exports the vlp_* functions only (tools/vlp.map).
$(BUILD)/libvlp.so.$(VERSION): $(PIC_OBJ) tools/vlp.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script,tools/vlp.map -o $@ $(PIC_OBJ) $(LDLIBS_ALL)
	ln -sf libvlp.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libvlp.so

$(BUILD)/vlp.pc: tools/vlp.pc.in $(CONFIG) $(BUILD)/prefix.stamp FORCE
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@DATADIR@|$(DATADIR)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS_PRIVATE@|$(strip $(LDLIBS_ALL))|' $< > $@

CLI_SRC := tools/vlp.c tools/args.c tools/model_args.c tools/progress.c tools/opts.c tools/plot.c tools/interrupt.c $(wildcard tools/cmd_*.c tools/data_*.c)
$(BUILD)/vlp: $(CLI_SRC) $(TOOL_SUPPORT) $(BUILD)/libvlp.a tools/*.h
	$(CC) $(CFLAGS_ALL) -Itools $(CLI_SRC) $(TOOL_SUPPORT) $(BUILD)/libvlp.a -o $@ $(LDLIBS_ALL)

# shell tests (TAP, like the C ones): copied next to them, run by tests/run.sh
$(BUILD)/tests/%: tests/%.sh
	@mkdir -p $(dir $@)
	cp $< $@ && chmod +x $@

$(BUILD)/tests/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz_support.c tests/fuzz/fuzz.h $(BUILD)/libvlp.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/fuzz $< tests/fuzz/replay.c tests/fuzz/fuzz_support.c $(BUILD)/libvlp.a -o $@ $(LDLIBS_ALL)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_support.c tests/fuzz/fuzz.h $(BUILD)/libvlp.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -Itests/fuzz $< tests/fuzz/fuzz_support.c $(BUILD)/libvlp.a -o $@ $(LDLIBS_ALL)

fuzz-build: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)

# every target for FUZZ_SECONDS (default 60) from its committed corpus;
# new inputs go to build/fuzz/work, crashes to build/fuzz/crash-*
fuzz:
	@sh scripts/deps.sh --fuzz
	@$(MAKE) --no-print-directory MODE=fuzz fuzz-build
	sh tests/fuzz/run.sh build/fuzz/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)
fuzz-long:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=3600

# the fault tests' shims (LD_PRELOAD: a write that fails, a file changed while
# read): no sanitizer of their own
$(BUILD)/tests/tools/lib%.so: tests/tools/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -fPIC -shared $< -o $@ -ldl

$(BUILD)/tests/tools/%: tests/tools/%.c $(CONFIG) $(BUILD)/flags.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) $(BUILD)/libvlp.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(TEST_CFLAGS) $(CMOCKA_CFLAGS) -Itests/support $< $(TEST_SUPPORT) $(BUILD)/libvlp.a -o $@ $(CMOCKA_LIBS) $(LDLIBS_ALL)

$(BUILD)/examples/%: examples/%.c include/vlp.h $(BUILD)/libvlp.a
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(OPT) $(WARN) -Iinclude $< $(BUILD)/libvlp.a -o $@ $(LDLIBS_ALL)

$(BUILD)/bench/%: bench/%.c $(TOOL_SUPPORT) $(BUILD)/libvlp.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itools $< $(TOOL_SUPPORT) $(BUILD)/libvlp.a -o $@ $(LDLIBS_ALL)

deps:
	@sh scripts/deps.sh

# The suite twice: optimised, then under AddressSanitizer + UBSan.
test: deps
	@$(MAKE) --no-print-directory MODE=release all
	@$(MAKE) --no-print-directory MODE=asan tests
	@sh tests/run.sh build/release build/asan

test-release: deps
	@$(MAKE) --no-print-directory MODE=release tests
	@sh tests/run.sh build/release

test-asan: deps
	@$(MAKE) --no-print-directory MODE=asan tests
	@sh tests/run.sh build/asan

# arm64: cross-built with Debian's aarch64 compiler against the arm64
# multiarch libraries (scripts/deps.sh --arm64), the C tests and
# test_main_commands run under qemu-user; the other shell tests exec vlp
# directly and are skipped there (docs/performance.md)
ARM64_PKG_CONFIG := /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
ARM64_QEMU ?= qemu-aarch64 -L /usr/aarch64-linux-gnu
test-arm64:
	@sh scripts/deps.sh --arm64
	@PKG_CONFIG_LIBDIR=$(ARM64_PKG_CONFIG) $(MAKE) --no-print-directory CC=aarch64-linux-gnu-gcc \
	    BUILDROOT=build/arm64 MODE=release tests
	@VLP_TEST_RUNNER="$(ARM64_QEMU)" sh tests/run.sh build/arm64/release

# the release build on CPUs with fewer features than this one, their CPUID
# emulated by qemu-user (x86-64 without AVX, then AVX2 without AVX-512):
# the build runs on them and its tests pass at their levels
MASKED_CPUS ?= Nehalem Haswell
test-cpus:
	@sh scripts/deps.sh --qemu
	@$(MAKE) --no-print-directory MODE=release tests
	@for cpu in $(MASKED_CPUS); do echo "== qemu-x86_64 -cpu $$cpu"; \
	    VLP_TEST_RUNNER="qemu-x86_64 -cpu $$cpu" sh tests/run.sh build/release || exit 1; done

bench: deps
	@$(MAKE) --no-print-directory MODE=release benches
	@sh bench/run.sh build/release

# The demo: fetch the emoji corpus (cached, checksummed), write the training
# vendors (google, apple, facebook) as a TSV and pack it into WebDataset
# shards, train the `tiny` CLIP from the shards for DEMO_STEPS steps (about 6
# minutes on 2 cores; the tokenizer is a BPE learnt on the captions) and
# evaluate on the held-out twitter images (validation during training:
# retrieval and zero-shot on them). 11,214 pairs make 12 shards.
DEMO_STEPS ?= 240
DEMO_RUN ?= runs/demo
demo: deps
	@sh scripts/deps.sh --data
	@$(MAKE) --no-print-directory MODE=release lib build/release/vlp
	build/release/vlp info
	sh scripts/get-data.sh data/emoji
	build/release/vlp data emoji --emoji-dir data/emoji --vendors google,apple,facebook --out data/emoji-train.tsv
	build/release/vlp data shards --data data/emoji-train.tsv --out data/emoji-shards/train \
	    --alt-caption-key coarse --samples-per-shard 1000
	build/release/vlp data emoji --emoji-dir data/emoji --vendors twitter --out data/emoji-twitter.tsv
	printf 'an emoji of {}\n' > data/emoji-templates.txt
	rm -rf $(DEMO_RUN)
	build/release/vlp train --model-config tiny --out $(DEMO_RUN) \
	    --train-data 'data/emoji-shards/train-{00000..00011}.tar' --white-background \
	    --alt-caption-key coarse --alt-caption-prob 0.1667 \
	    --val-data data/emoji-twitter.tsv --zeroshot-data data/emoji-twitter.tsv \
	    --label-key category --templates data/emoji-templates.txt \
	    --steps $(DEMO_STEPS) --batch 128 --lr 1e-3 --warmup 20 --eval-every 120 --save-every 60
	build/release/vlp eval --model $(DEMO_RUN)/latest.safetensors --data data/emoji-twitter.tsv \
	    --label-key category --templates data/emoji-templates.txt

# Regenerate the PyTorch reference vectors (needs scripts/deps.sh --ref).
ref:
	@sh scripts/deps.sh --ref
	/usr/bin/python3 tests/ref/make_ops_ref.py tests/ref
	/usr/bin/python3 tests/ref/make_clip_ref.py tests/ref
	/usr/bin/python3 tests/ref/check_checkpoint.py --keys tests/ref/clip_state_dict_keys.txt
	/usr/bin/python3 tests/ref/make_bpe_ref.py vocab/bpe_simple_vocab_16e6.txt.gz tests/ref/bpe_ref.tsv
	/usr/bin/python3 tests/ref/make_image_ref.py tests/ref
	/usr/bin/python3 tests/ref/make_modes_ref.py
	/usr/bin/python3 tests/ref/make_pretrained_ref.py tests/ref
	/usr/bin/python3 tests/ref/make_adapt_ref.py tests/ref
	/usr/bin/python3 tests/ref/make_api_ref.py tests/ref
	/usr/bin/python3 tests/ref/make_objectives_ref.py tests/ref
	/usr/bin/python3 tests/ref/make_coca_ref.py tests/ref
	/usr/bin/python3 tests/ref/make_fusion_ref.py tests/ref
	/usr/bin/python3 tests/ref/make_mae_ref.py tests/ref
	/usr/bin/python3 tests/ref/make_headwidth_ref.py tests/ref

# Load a checkpoint into the open_clip-structured PyTorch module:
#   make check-checkpoint CKPT=runs/emoji/latest.safetensors
check-checkpoint:
	@sh scripts/deps.sh --ref
	/usr/bin/python3 tests/ref/check_checkpoint.py $(CKPT)

install: deps
	@$(MAKE) --no-print-directory MODE=release lib shared build/release/vlp build/release/vlp.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	    $(addprefix $(DESTDIR)$(DATADIR)/,$(sort $(dir $(DATA))))
	install -m 755 build/release/vlp $(DESTDIR)$(BINDIR)/vlp
	install -m 644 build/release/libvlp.a $(DESTDIR)$(LIBDIR)/libvlp.a
	install -m 755 build/release/libvlp.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libvlp.so.$(VERSION)
	ln -sf libvlp.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libvlp.so
	install -m 644 include/vlp.h include/vlp_error.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 build/release/vlp.pc $(DESTDIR)$(PKGCONFIGDIR)/vlp.pc
	for f in $(DATA); do install -m 644 $$f $(DESTDIR)$(DATADIR)/$$f || exit 1; done
	install -d $(DESTDIR)$(PYTHONDIR)/vlp
	install -m 644 python/vlp/*.py $(DESTDIR)$(PYTHONDIR)/vlp/
	@echo "installed vlp $(VERSION) into $(DESTDIR)$(PREFIX) (Python package: $(PYTHONDIR)/vlp)"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vlp $(DESTDIR)$(LIBDIR)/libvlp.a $(DESTDIR)$(LIBDIR)/libvlp.so \
	    $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libvlp.so.$(VERSION) \
	    $(DESTDIR)$(INCLUDEDIR)/vlp.h $(DESTDIR)$(INCLUDEDIR)/vlp_error.h $(DESTDIR)$(PKGCONFIGDIR)/vlp.pc
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(PYTHONDIR)/vlp

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(PIC_OBJ:.o=.d)
