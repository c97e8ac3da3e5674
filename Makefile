# kdcache: one build for the libraries, the three tools and the Check suites.
#
#   make                 libraries + kd-precompute, kd-train, kd-cache in build/bin
#   make check           every Check suite (fixtures from Debian's PyTorch first)
#   make check SANITIZE=1  the same under AddressSanitizer + UBSan (build-asan/)
#   make check-gpu       CUDA vs CPU op checks; prints one line and exits 0 without a GPU
#   make install PREFIX=/usr/local
#
# Sources are found by wildcard: a new common/<layer>/foo.c joins libkdcommon.a, a new
# tests/<layer>/test_foo.c becomes the suite build/tests/<layer>/test_foo. Files named *_main.c
# are program entry points and stay out of the libraries.

CC      ?= cc
PREFIX  ?= /usr/local
SANITIZE ?= 0
PYTHON  ?= /usr/bin/python3
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)

# CUDA: built when nvcc is found, unless CUDA=0 (docs/GPU.md). Sanitizer builds stay CPU-only
# (ASan's shadow memory and the CUDA runtime do not mix).
ifeq ($(SANITIZE),1)
CUDA ?= 0
else ifneq ($(and $(NVCC),$(wildcard common/cuda/backend_cuda.cu)),)
CUDA ?= 1
else
CUDA ?= 0
endif

ifeq ($(CUDA),1)
ifeq ($(NVCC),)
$(error CUDA=1 but no nvcc (not on PATH, not in /usr/local/cuda/bin); set NVCC=/path/to/nvcc)
endif
endif

ifeq ($(SANITIZE),1)
BUILD   ?= build-asan
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      = -O1 -g
# oneDNN is dlopen'ed (common/nn/dnnl_load.h); LeakSanitizer's exit scan crashes on
# the thread-local storage of a dlopen'ed libdnnl, so sanitizer builds load it at start.
SANLIBS  = -Wl,--push-state,--no-as-needed -ldnnl -Wl,--pop-state
else ifneq ($(and $(NVCC),$(filter 0,$(CUDA))),)
# CPU-only build on a machine with nvcc: its own tree, so that objects and
# archives of the two configurations never mix.
BUILD   ?= build-nocuda
SANFLAGS =
OPT      = -O2 -g
else
BUILD   ?= build
SANFLAGS =
OPT      = -O2 -g
endif

PKGS      = hdf5 libturbojpeg jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

CFLAGS  = -std=c11 -D_GNU_SOURCE $(OPT) -Wall -Wextra -Werror -pthread -I. $(PKG_CFLAGS) $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS = -pthread $(SANFLAGS) $(EXTRA_LDFLAGS)
LDLIBS  = $(PKG_LIBS) -llz4 -lnettle -lz -ldl -lm $(SANLIBS)

CUDA_HOME ?= /usr/local/cuda
ifeq ($(CUDA),1)
CFLAGS   += -DKDC_HAVE_CUDA=1 -I$(CUDA_HOME)/include
# sm_80 (A100) and sm_90 (H100) machine code plus compute_90 PTX for newer
# GPUs; -lineinfo so that compute-sanitizer reports source lines. Only the
# static CUDA runtime is linked, never -lcuda: the driver is loaded at run
# time, so every binary also starts on machines without a GPU.
NVCCFLAGS = -O2 -lineinfo -std=c++17 -I. -I$(CUDA_HOME)/include -Xcompiler -Wall,-Wextra,-Werror \
            -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
            -gencode arch=compute_90,code=compute_90 -DKDC_HAVE_CUDA=1
# cuDNN and cuBLAS are not linked: common/cuda/cuda_libs.cu dlopens them when a
# GPU is used (docs/GPU.md, "Libraries at run time").
LDLIBS   += -L$(CUDA_HOME)/lib64 -lcudart_static -lrt -lstdc++
CU_SRCS   = $(wildcard common/*/*.cu formats/*.cu train/*.cu precompute/*.cu)
STUB_SRCS =
else
CU_SRCS   =
STUB_SRCS = common/cuda/backend_cuda_stub.c
endif

# ---- rpath (docs/GPU.md, "The bundle") ----
# Every program looks for shared libraries in ../lib beside its own folder
# first: scripts/gpu/gpu_bundle.sh puts bin/, gpu/, bench/, bundle/ and lib/
# side by side. DT_RPATH, not RUNPATH: the loader also uses it for the
# libraries' own dependencies (HDF5's libcurl, oneDNN's libgomp, ...) and for
# what they dlopen. In the normal build ../lib holds only static archives, so
# nothing changes there.
LDFLAGS += -Wl,-rpath,'$$ORIGIN/../lib' -Wl,--disable-new-dtags

lib_srcs = $(filter-out %_main.c,$(wildcard $(1)/*.c))

COMMON_SRCS  := $(filter-out $(if $(filter 1,$(CUDA)),common/cuda/backend_cuda_stub.c),$(call lib_srcs,common/*))
FORMATS_SRCS := $(call lib_srcs,formats)
TRAIN_SRCS   := $(call lib_srcs,train)
PRECOMP_SRCS := $(call lib_srcs,precompute)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
cuobj = $(patsubst %.cu,$(BUILD)/obj/%.cu.o,$(1))

LIB_COMMON  = $(BUILD)/lib/libkdcommon.a
LIB_FORMATS = $(BUILD)/lib/libkdformats.a
LIB_TRAIN   = $(BUILD)/lib/libkdtrain.a
LIB_PRECOMP = $(BUILD)/lib/libkdprecompute.a
LIB_CUDA    = $(if $(CU_SRCS),$(BUILD)/lib/libkdcuda.a)
# Link order: users before what they use.
ALL_LIBS = $(LIB_PRECOMP) $(LIB_TRAIN) $(LIB_FORMATS) $(LIB_CUDA) $(LIB_COMMON) $(LIB_CUDA)

TOOLS = $(BUILD)/bin/kd-precompute $(BUILD)/bin/kd-train $(BUILD)/bin/kd-cache

TEST_SRCS   := $(filter-out tests/gpu/% tests/bench/%,$(wildcard tests/*/test_*.c))
TEST_UTIL   := $(wildcard tests/helpers/*.c)
TEST_BINS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
BENCH_SRCS  := $(wildcard tests/bench/*.c)
BENCH_BINS  := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
GPU_TEST_SRCS := $(wildcard tests/gpu/*.c)
GPU_TEST_BINS := $(patsubst tests/gpu/%.c,$(BUILD)/gpu/%,$(GPU_TEST_SRCS))
# Helpers of the GPU bundle and its checks (tests/bundle/README.md).
BUNDLE_SRCS := $(wildcard tests/bundle/*.c)
BUNDLE_BINS := $(patsubst tests/bundle/%.c,$(BUILD)/bundle/%,$(BUNDLE_SRCS))

# Reference fixtures: scripts/ref/ref_NAME.py writes build/fixtures/NAME/ with PyTorch.
REF_SCRIPTS := $(wildcard scripts/ref/ref_*.py)
FIXTURES    := $(patsubst scripts/ref/ref_%.py,$(BUILD)/fixtures/%/.stamp,$(REF_SCRIPTS))

.PHONY: fuzz all tools tests bench check check-layout check-gpu check-bundle bundle bundle-bins fixtures install clean format
all: tools
tools: $(TOOLS)
tests: $(TEST_BINS)
bench: $(BENCH_BINS)

# --version (common/base/version.c): the release, the git commit and the build options.
# The commit is "unknown" outside a git checkout (a release tarball) unless given,
# e.g. make KDC_GIT_COMMIT=d6baa61; "-dirty" marks tracked files that differ from it.
# Only version.o sees these defines; $(BUILD)/version.stamp changes when they do, so a
# new commit recompiles one file and relinks.
KDC_VERSION ?= 1.0
ifeq ($(origin KDC_GIT_COMMIT),undefined)
KDC_GIT_COMMIT := $(or $(if $(wildcard .git),$(shell git rev-parse --short HEAD 2>/dev/null)),unknown)
ifneq ($(KDC_GIT_COMMIT),unknown)
KDC_GIT_COMMIT := $(KDC_GIT_COMMIT)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
endif
endif
VERSION_STAMP = $(BUILD)/version.stamp
VERSION_INFO  = $(KDC_VERSION) $(KDC_GIT_COMMIT) cuda=$(CUDA) sanitize=$(SANITIZE) $(OPT)
$(VERSION_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(VERSION_INFO)' | cmp -s - $@ || echo '$(VERSION_INFO)' > $@
$(BUILD)/obj/common/base/version.o: $(VERSION_STAMP)
$(BUILD)/obj/common/base/version.o: CFLAGS += -DKDC_VERSION='"$(KDC_VERSION)"' \
    -DKDC_GIT_COMMIT='"$(KDC_GIT_COMMIT)"' -DKDC_BUILD_CUDA=$(CUDA) \
    -DKDC_BUILD_SANITIZE=$(SANITIZE) -DKDC_BUILD_OPT='"$(OPT)"'
.PHONY: FORCE
FORCE:

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(LIB_COMMON): $(call obj,$(COMMON_SRCS))
$(LIB_FORMATS): $(call obj,$(FORMATS_SRCS))
$(LIB_TRAIN): $(call obj,$(TRAIN_SRCS))
$(LIB_PRECOMP): $(call obj,$(PRECOMP_SRCS))
# The CUDA objects may call only the cuDNN / cuBLAS functions that the shim
# (common/cuda/cuda_libs.cu) lists; the check names any other.
$(BUILD)/lib/libkdcuda.a: $(call cuobj,$(CU_SRCS)) scripts/gpu/check_cuda_shim.sh
	@mkdir -p $(dir $@)
	@scripts/gpu/check_cuda_shim.sh $(BUILD)/obj/common/cuda/cuda_libs.cu.o $(filter %.o,$^)
	rm -f $@
	ar rcs $@ $(filter %.o,$^)
$(BUILD)/lib/%.a:
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/kd-precompute: $(call obj,precompute/kd_precompute_main.c) $(ALL_LIBS)
$(BUILD)/bin/kd-train: $(call obj,train/kd_train_main.c) $(ALL_LIBS)
$(BUILD)/bin/kd-cache: $(call obj,formats/kd_cache_main.c) $(ALL_LIBS)
$(TOOLS):
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(ALL_LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(call obj,$(TEST_UTIL)) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(ALL_LIBS) $(LDLIBS) $(CHECK_LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(ALL_LIBS) $(LDLIBS)

$(BUILD)/gpu/%: $(BUILD)/obj/tests/gpu/%.o $(call obj,$(TEST_UTIL)) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(ALL_LIBS) $(LDLIBS) $(CHECK_LIBS)

# Fixtures are generated per build folder (build-asan/ makes its own), so a
# sanitizer run never shares files that a normal run's tests may have written.
$(BUILD)/fixtures/%/.stamp build/fixtures/%/.stamp: scripts/ref/ref_%.py
	@mkdir -p $(dir $@)
	@$(PYTHON) -c 'import torch' 2>/dev/null || { echo "fixtures: $(PYTHON) has no torch; run scripts/setup.sh" >&2; exit 1; }
	$(PYTHON) $< $(dir $@)
	@touch $@

fixtures: $(FIXTURES)

# Modules the reference scripts share: a change there remakes their fixtures.
$(FIXTURES): scripts/ref/refutil.py
$(filter %/zoo/.stamp %/zoo_teachers/.stamp,$(FIXTURES)): scripts/ref/zoo_defs.py
$(filter %/dist/.stamp,$(FIXTURES)): scripts/ref/ref_train.py

# Each suite runs with the tools and fixtures it may need; CK_FORK keeps a
# crashing test from taking the whole suite down.
# The include rules between layers (tests/layout/check_includes.sh, docs/DEVELOPING.md),
# and a self-test showing that the check can fail.
check-layout:
	@tests/layout/selftest.sh
	@tests/layout/check_includes.sh
	@tests/layout/check_script_roots.sh

# The fuzz driver (tests/fuzz/README.md): the bounded pass is the suite
# tests/fuzz/test_fuzz; tests/fuzz/run.sh drives the long run.
FUZZ_BIN = $(BUILD)/fuzz/kd-fuzz
$(FUZZ_BIN): $(BUILD)/obj/tests/fuzz/fuzz_main.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(ALL_LIBS) $(LDLIBS)
fuzz: $(FUZZ_BIN)

check: check-layout tools $(TEST_BINS) $(FIXTURES) $(FUZZ_BIN)
	@set -e; failed=""; mkdir -p $(BUILD)/check-logs; \
	for t in $(TEST_BINS); do \
	  echo "== $$t"; log=$(BUILD)/check-logs/$$(basename $$t).log; \
	  rc=0; KDC_FIXTURES=$(BUILD)/fixtures KDC_BIN=$(BUILD)/bin KDC_ROOT=$(CURDIR) PYTHON=$(PYTHON) \
	    CK_DEFAULT_TIMEOUT=$${CK_DEFAULT_TIMEOUT:-300} CK_TIMEOUT_MULTIPLIER=$${CK_TIMEOUT_MULTIPLIER:-$(if $(filter 1,$(SANITIZE)),3,1)} $$t >$$log 2>&1 || rc=$$?; \
	  cat $$log; [ $$rc -eq 0 ] || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then \
	  echo "make check: $$(echo $$failed | wc -w) suite(s) failed:"; \
	  for t in $$failed; do echo "  $$t"; \
	    grep -E ':[FE]:|Assertion|ERROR|Timeout|signal' $(BUILD)/check-logs/$$(basename $$t).log | head -5 | sed 's/^/    /'; \
	  done; exit 1; fi; \
	echo "make check: all $(words $(TEST_BINS)) suites passed"

check-gpu: tools $(GPU_TEST_BINS)
	@set -e; for t in $(GPU_TEST_BINS); do KDC_BIN=$(BUILD)/bin $$t; done

# ---- GPU bundle (docs/GPU.md) ----
$(BUILD)/bundle/%: $(BUILD)/obj/tests/bundle/%.o $(call obj,$(TEST_UTIL)) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(ALL_LIBS) $(LDLIBS) $(CHECK_LIBS)

bundle-bins: tools bench $(GPU_TEST_BINS) $(BUNDLE_BINS)

# build/dist/kdcache-gpu.tar.gz: tools, check-gpu programs, benchmarks, scripts
# and every shared library they load except glibc, the driver, cuDNN and cuBLAS.
bundle:
	bash scripts/gpu/gpu_bundle.sh

# The bundle unpacked in a minimal Debian root (debootstrap, cached): every
# tool's --help, a CPU run, gpu_check.sh's "no GPU" path. Needs root; scripts/test.sh runs it.
check-bundle:
	bash tests/bundle/check_bundle.sh

install: tools
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/

format:
	clang-format -i $(wildcard common/*/*.[ch] common/*/*.cu formats/*.[ch] formats/*.cu train/*.[ch] train/*.cu precompute/*.[ch] tests/*/*.[ch])

clean:
	rm -rf build build-asan build-nocuda

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
