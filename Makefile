# onnxtl build.  `make` builds build/onnxtl and build/libonnxtl.a;
# `make test` runs every test (`make test-sanitize`: all of them under ASan+UBSan);
# `make SANITIZE=1` builds with ASan+UBSan into build-san/,
# `make SANITIZE=thread` with ThreadSanitizer into build-tsan/.

CC ?= cc

CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc

ifeq ($(SANITIZE),1)
BUILD := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1 -g
else ifeq ($(SANITIZE),thread)
BUILD := build-tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer -DOTL_NO_ISA_CLONES
OPT := -O1 -g
else
BUILD := build
SANFLAGS :=
OPT := -O2 -g
endif
ifeq ($(CUDA),1)
BUILD := build-cuda
endif
# FUZZ=1: clang with libFuzzer's instrumentation, ASan and UBSan, into build-fuzz/ (make fuzz).
ifeq ($(FUZZ),1)
BUILD := build-fuzz
CC := clang
SANFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -DOTL_FUZZING -Wno-pass-failed
OPT := -O1 -g
endif

# -fPIC: the objects make libonnxtl.so too; -fvisibility=hidden: it exports only ONNXTL_API.
CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) -march=x86-64-v2 -Wall -Wextra -Wshadow -Wno-unused-parameter -fopenmp \
          -fPIC -fvisibility=hidden \
          -I$(BUILD)/onnx -Iinclude -Igraph -Iruntime -Iruntime/cpu -Isrc/api -Isrc/pipeline $(SANFLAGS)
# protobuf-c is linked statically so the binary runs on machines without it.
LDLIBS := -l:libprotobuf-c.a -l:libturbojpeg.a -ldnnl -lm -fopenmp $(SANFLAGS)

LIB_SRC := $(wildcard graph/*.c) $(wildcard runtime/*.c) $(wildcard runtime/cpu/*.c) \
           $(wildcard src/api/*.c) $(wildcard src/pipeline/*.c)
CLI_SRC := $(wildcard src/cli/*.c)

ifeq ($(CUDA),1)
# CUDA=1: the cuDNN/cuBLAS backend (kernels for Hopper, sm_90, plus PTX for newer GPUs).
LIB_SRC += $(wildcard runtime/cuda/*.c)
CFLAGS += -DONNXTL_CUDA -I$(CUDA_HOME)/include -Iruntime/cuda
LDLIBS += -L$(CUDA_HOME)/lib64 -lcudnn -lcublas -lcudart -lstdc++
CUDA_OBJ := $(BUILD)/obj/runtime/cuda/kernels.o
endif

LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/onnx/onnx.pb-c.o $(CUDA_OBJ)
CLI_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRC))
TEST_BINS := $(BUILD)/test_conformance $(BUILD)/test_preprocess_dump $(BUILD)/test_sha256 $(BUILD)/test_repack $(BUILD)/bench_backbone $(BUILD)/synth_features
# Fuzz targets: test/fuzz/NAME.c, run by libFuzzer (fuzz_NAME) or on saved inputs (replay_NAME).
FUZZ_NAMES := $(basename $(notdir $(filter-out test/fuzz/replay.c test/fuzz/fuzz_file.c,$(wildcard test/fuzz/*.c))))
FUZZ_SHARED := $(BUILD)/obj/test/fuzz/fuzz_file.o $(BUILD)/libonnxtl.a

VERSION := $(shell sed -n 's/^\#define ONNXTL_VERSION "\(.*\)"/\1/p' include/onnxtl.h)
SONAME := libonnxtl.so.$(firstword $(subst ., ,$(VERSION)))
# The shared library links its dependencies as shared libraries, where the CLI has them built in.
SO_LIBS := $(subst -l:libturbojpeg.a,-lturbojpeg,$(subst -l:libprotobuf-c.a,-lprotobuf-c,$(LDLIBS)))

all: $(BUILD)/onnxtl $(BUILD)/libonnxtl.a $(BUILD)/libonnxtl.so.$(VERSION) $(BUILD)/onnxtl.1 $(TEST_BINS)

include onnx/schema.mk

# Only the CLI sees its own headers: the library cannot reach up to it.
$(CLI_OBJ): CFLAGS += -Isrc/cli

# Objects are rebuilt when the flags change, not only when their sources do.
$(BUILD)/cflags: FORCE
	@mkdir -p $(@D)
	@echo '$(CC) $(CFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS)' > $@

$(BUILD)/obj/%.o: %.c $(BUILD)/onnx/onnx.pb-c.h $(BUILD)/cflags
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/runtime/cuda/kernels.o: runtime/cuda/kernels.cu runtime/cuda/kernels.h runtime/dropout.h graph/mix64.h
	@mkdir -p $(@D)
	$(NVCC) -O2 -Igraph -Iruntime -Xcompiler -fPIC -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 -c $< -o $@

$(BUILD)/libonnxtl.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/onnxtl: $(CLI_OBJ) $(BUILD)/libonnxtl.a
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/libonnxtl.so.$(VERSION): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $^ -o $@ $(SO_LIBS)

# The manual is the binary's own --help texts.
$(BUILD)/onnxtl.1: $(BUILD)/onnxtl tools/make_man.sh
	tools/make_man.sh $< $(VERSION) > $@

$(BUILD)/test_%: $(BUILD)/obj/test/%.o $(BUILD)/libonnxtl.a
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/bench_%: $(BUILD)/obj/tools/bench_%.o $(BUILD)/libonnxtl.a
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/synth_features: $(BUILD)/obj/tools/synth_features.o $(BUILD)/libonnxtl.a
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/obj/test/fuzz/%.o: CFLAGS += -Itest/fuzz

$(BUILD)/fuzz_%: $(BUILD)/obj/test/fuzz/%.o $(FUZZ_SHARED)
	$(CC) $^ -o $@ $(LDLIBS) -fsanitize=fuzzer

$(BUILD)/replay_%: $(BUILD)/obj/test/fuzz/%.o $(BUILD)/obj/test/fuzz/replay.o $(FUZZ_SHARED)
	$(CC) $^ -o $@ $(LDLIBS)

replays: $(foreach t,$(FUZZ_NAMES),$(BUILD)/replay_$(t))

# make fuzz FUZZ_S=N: each fuzz target for N seconds (default 60), from the seeds
# tools/fuzz.sh gathers; inputs that fail are saved under build-fuzz/crashes/.
FUZZ_S ?= 60
fuzz:
	tools/install_deps.sh fuzz
	$(MAKE) build/synth_features
	$(MAKE) FUZZ=1 $(foreach t,$(FUZZ_NAMES),build-fuzz/fuzz_$(t))
	tools/fuzz.sh $(FUZZ_S)

deps:
	tools/install_deps.sh

# The README's two commands: both install missing Debian packages first.
demo:
	tools/demo.sh

test: deps
	$(MAKE) all
	test/run_tests.sh

# Every suite of make test on the ASan+UBSan build, build-san/ (about twice as long).
test-sanitize: deps
	$(MAKE) SANITIZE=1 all
	ONNXTL_BUILD=build-san ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 test/run_tests.sh

bench: deps
	$(MAKE) all
	tools/bench.sh

# make install PREFIX=/usr/local DESTDIR=...: the CLI, the shared and static
# libraries, the headers, onnxtl.pc and the manual; make uninstall removes
# exactly those files.
PREFIX ?= /usr/local
BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib
INCLUDEDIR := $(PREFIX)/include
MANDIR := $(PREFIX)/share/man/man1
INSTALLED := $(BINDIR)/onnxtl $(LIBDIR)/libonnxtl.so.$(VERSION) $(LIBDIR)/$(SONAME) $(LIBDIR)/libonnxtl.so \
             $(LIBDIR)/libonnxtl.a $(INCLUDEDIR)/onnxtl.h $(INCLUDEDIR)/onnxtl_base.h \
             $(LIBDIR)/pkgconfig/onnxtl.pc $(MANDIR)/onnxtl.1

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(MANDIR)
	install -m 755 $(BUILD)/onnxtl $(DESTDIR)$(BINDIR)/onnxtl
	install -m 755 $(BUILD)/libonnxtl.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libonnxtl.so.$(VERSION)
	ln -sf libonnxtl.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libonnxtl.so
	install -m 644 $(BUILD)/libonnxtl.a $(DESTDIR)$(LIBDIR)/libonnxtl.a
	install -m 644 include/onnxtl.h graph/onnxtl_base.h $(DESTDIR)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' tools/onnxtl.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/onnxtl.pc
	install -m 644 $(BUILD)/onnxtl.1 $(DESTDIR)$(MANDIR)/onnxtl.1
	$(if $(DESTDIR),,-ldconfig)

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	$(if $(DESTDIR),,-ldconfig)

clean:
	rm -rf build/obj build/onnx build/onnxtl build/libonnxtl.* build/onnxtl.1 build/test_* build-san build-tsan build-cuda build-fuzz

.PHONY: all deps demo test test-sanitize bench clean fuzz replays install uninstall FORCE
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
