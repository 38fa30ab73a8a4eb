# sdtools — build, test and demo. See README.md.
#
#   make            build the library, the tools and the tests
#   make check      install missing dependencies, build, run every test
#   make demo       run the pipeline on a built-in synthetic dataset
#   make asan       build and run the unit tests under ASan+UBSan
#   make cuda       compile and link the CUDA sources with nvcc
#   make fuzz       short libFuzzer smoke run of the parsers (clang)
#   make golden     regenerate tests/ref goldens in .venv-ref (torch, diffusers)
#   make bench      benchmarks side by side with PyTorch (.venv-ref)
#   make install PREFIX=/usr/local

CC       ?= gcc
BUILD    ?= build
OPT      ?= -O2 -march=native
SAN      ?=
PREFIX   ?= /usr/local
VERSION  := 0.1.0

PKGS     := libarchive libpng libzstd libwebp libcjson libutf8proc zlib libdeflate
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
BLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp

CFLAGS   := -std=gnu11 $(OPT) $(SAN) -g -Wall -Wextra -Wno-unused-parameter -fopenmp -fno-strict-aliasing \
            -Ilib -I$(BLAS_INC) $(PKG_CFLAGS) -DSD_VERSION=\"$(VERSION)\" -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS  := $(SAN) -fopenmp -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR)
LDLIBS   := $(PKG_LIBS) -ljpeg -lopenblas -lm -lpthread

LIB_SRC  := $(shell find lib -name '*.c' | sort)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB_A    := $(BUILD)/libsd.a
TOOL_SRC := $(wildcard tools/*.c)
TOOLS    := $(TOOL_SRC:tools/%.c=$(BUILD)/bin/%)
TEST_SRC := $(wildcard tests/unit/test_*.c)
TESTS    := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_UTIL_SRC := $(wildcard tests/util/*.c)
TEST_UTILS := $(TEST_UTIL_SRC:tests/util/%.c=$(BUILD)/tests/util/%)

.PHONY: all lib tools tests check deps demo asan cuda fuzz golden bench install clean distclean
.DELETE_ON_ERROR:

all: tools tests
lib: $(LIB_A)
tools: $(TOOLS)
tests: $(TESTS) $(TEST_UTILS) tools

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/%: $(BUILD)/obj/tools/%.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB_A) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB_A) $(LDLIBS) -o $@

$(BUILD)/tests/util/%: $(BUILD)/obj/tests/util/%.o $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB_A) $(LDLIBS) -o $@

$(BUILD)/obj/tests/%.o: CFLAGS += -Itests
# lib/train mirrors torch's float32 arithmetic op by op: no FP contraction
# (also set by pragmas in the sources), and sqrtf without errno so its loops
# vectorize.
$(BUILD)/obj/lib/train/%.o: CFLAGS += -ffp-contract=off -fno-math-errno

# ---- dependencies: system packages (apt-get) and the light Python test venv
DEPS_STAMP := .venv-test/.sdtools-req
deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/install-deps.sh tests/requirements.txt
	scripts/install-deps.sh

# ---- tests
check: $(DEPS_STAMP)
	$(MAKE) all
	BUILD=$(BUILD) tests/run.sh

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: $(DEPS_STAMP)
	$(MAKE) BUILD=build/asan OPT="-O1 -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  BUILD=build/asan SD_SANITIZED=1 tests/run.sh

# ---- CUDA: compiled and linked with nvcc so GPU code cannot rot (CI has no GPU)
NVCC      ?= /usr/local/cuda/bin/nvcc
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90
CUDA_SRC  := $(shell find lib/backend/cuda -name '*.cu' 2>/dev/null | sort)
CUDA_OBJ  := $(CUDA_SRC:%.cu=$(BUILD)/cuda/%.o)
CUDA_TEST_SRC := $(wildcard tests/cuda/*.cu)
CUDA_TESTS := $(CUDA_TEST_SRC:tests/cuda/%.cu=$(BUILD)/cuda/tests/%)
NVCCFLAGS := -O2 -std=c++17 $(CUDA_ARCH) -Ilib -Itests -DSD_VERSION=\"$(VERSION)\" -Xcompiler -fopenmp
CUDA_LIBS := -L/usr/local/cuda/lib64 -Xlinker -rpath,/usr/local/cuda/lib64 -lcudart -lcublasLt -lcublas -lcudnn

cuda: $(CUDA_TESTS)
$(BUILD)/cuda/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
$(BUILD)/cuda/tests/%: tests/cuda/%.cu $(CUDA_OBJ) $(LIB_A)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $< $(CUDA_OBJ) $(LIB_A) -o $@ $(CUDA_LIBS) -Xlinker -rpath,$(BLAS_DIR) -L$(BLAS_DIR) $(LDLIBS) -lgomp

# ---- fuzzing (libFuzzer, clang): a short smoke run per target
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_SECONDS ?= 20
fuzz: $(DEPS_STAMP) $(FUZZ_BIN)
	@mkdir -p build/fuzz/seeds-safetensors
	@python3 tests/corpus/make_safetensors_corpus.py build/fuzz/seeds-safetensors 2>/dev/null
	@for f in $(FUZZ_BIN); do \
	  name=$$(basename $$f); mkdir -p build/fuzz/corpus-$$name; \
	  seeds=""; for d in build/fuzz/seeds-$${name#fuzz_} tests/corpus/$${name#fuzz_}; do \
	    [ -d $$d ] && seeds="$$seeds $$d"; done; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=0 \
	      build/fuzz/corpus-$$name $$seeds >build/fuzz/$$name.log 2>&1 \
	    || { tail -40 build/fuzz/$$name.log; exit 1; }; \
	  grep -E 'Done [0-9]+ runs' build/fuzz/$$name.log | tail -1; \
	done
FUZZ_LIB_SRC := $(filter lib/core/% lib/io/% lib/text/%,$(LIB_SRC))
build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_SRC)
	@mkdir -p $(dir $@)
	clang -std=gnu11 -O1 -g -fsanitize=fuzzer,address,undefined -Ilib $(PKG_CFLAGS) \
	  -DSD_VERSION=\"$(VERSION)\" $< $(FUZZ_LIB_SRC) -o $@ $(PKG_LIBS) -ljpeg -lm -lpthread

# ---- reference stack (torch, diffusers, transformers): goldens and benchmarks
REF_STAMP := .venv-ref/.sdtools-req
$(REF_STAMP): scripts/setup-ref.sh tests/ref/requirements.txt
	scripts/setup-ref.sh
golden: $(REF_STAMP) all
	tests/ref/make_goldens.sh
bench: $(REF_STAMP) all
	bench/run.sh

# ---- demo: the pipeline on a synthetic dataset
demo: $(DEPS_STAMP)
	$(MAKE) all
	scripts/demo.sh

install: tools
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	-install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/ 2>/dev/null

clean:
	rm -rf $(BUILD) build/asan build/fuzz demo-out

distclean: clean
	rm -rf build .venv-test .venv-ref .cache

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
