# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXP ?= exp/allison

.PHONY: install demo test lint clean sanitize wheel-check aarch64-check cross-tools

install: $(STAMP)

# torch first, pinned to the CPU wheel (an unpinned torch would pull a CUDA build),
# then the package in editable mode with its dev tools and TensorBoard. Re-runs only when
# these change.
# The engine sources are prerequisites too: the editable install compiles them.
$(STAMP): pyproject.toml Makefile CMakeLists.txt $(wildcard src/vocoder/engine/*.cpp src/vocoder/engine/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,tensorboard,train]'
	touch $(STAMP)

demo: install
	$(MAKE) -C recipes/allison all VOCODER=$(abspath $(BIN))/vocoder EXP=$(abspath $(EXP))

test: install sanitize wheel-check aarch64-check
	$(BIN)/python -m pytest -q

# The wheel, installed without extras into a fresh venv (no torch), synthesizes.
wheel-check: install
	PYTHON=$(PYTHON) bash scripts/wheel-check.sh

# The engine core, built with ASan + UBSan into a standalone program that runs a valid
# model on every ISA, then hand-made corruptions and a seeded mutation fuzz of the loader.
SAN := build/sanitize
TSAN := build/tsan
ENGINE := src/vocoder/engine
SAN_FLAGS := -std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
CORE_X86 := loader.o engine.o dispatch.o kernels_scalar.o kernels_avx2.o kernels_avx512.o probe.o probe_avx2.o probe_avx512.o
SAN_CORE := $(addprefix $(SAN)/,$(CORE_X86))
ISA_kernels_avx2 := -mavx2 -mfma
ISA_kernels_avx512 := -mavx2 -mfma -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni
ISA_probe_avx2 := $(ISA_kernels_avx2)
ISA_probe_avx512 := $(ISA_kernels_avx512)
ENGINE_H := $(addprefix $(ENGINE)/,wrnn.h probe.h chains.h columns.h)
FUZZ_ITERATIONS ?= 2000

$(SAN)/%.o: $(ENGINE)/%.cpp $(ENGINE_H)
	@mkdir -p $(SAN)
	$(CXX) $(SAN_FLAGS) $(ISA_$*) -c $< -o $@

# check_engine and compare_isas (every SIMD kernel table against the scalar one).
$(SAN)/%: tests/native/%.cpp $(SAN_CORE) $(ENGINE)/wrnn.h
	$(CXX) $(SAN_FLAGS) $< $(SAN_CORE) -o $@

# Random-weight model files (tests/native/make_fixture.py lists them) for these programs.
$(SAN)/tiny.wrnn: tests/native/make_fixture.py $(STAMP)
	@mkdir -p $(SAN)
	$(BIN)/python tests/native/make_fixture.py $@

# The SIMD objects must define no weak (inline/template) symbols: the linker could keep
# their AVX2/AVX-512 copy for the whole module and break it on older CPUs.
sanitize: install $(SAN)/tiny.wrnn $(SAN)/check_engine $(SAN)/compare_isas $(SAN)/approx_error $(TSAN)/check_engine
	@! nm -C $(addprefix $(SAN)/,kernels_avx2.o kernels_avx512.o probe_avx2.o probe_avx512.o) | grep -E ' [WVu] ' || \
		(echo "SIMD objects export weak symbols (see Makefile)"; false)
	$(SAN)/compare_isas $(SAN)/*.wrnn
	$(SAN)/check_engine $(SAN)/tiny.wrnn $(FUZZ_ITERATIONS)
	$(SAN)/check_engine $(SAN)/tiny-bf16.wrnn $(FUZZ_ITERATIONS)
	$(SAN)/check_engine $(SAN)/tiny-int8.wrnn $(FUZZ_ITERATIONS)
	$(SAN)/check_engine $(SAN)/tiny-sparse16x1-fp32.wrnn $(FUZZ_ITERATIONS)
	$(SAN)/check_engine $(SAN)/tiny-sparse4x4-int8.wrnn $(FUZZ_ITERATIONS)
	$(SAN)/check_engine $(SAN)/tiny-subscale-int8.wrnn $(FUZZ_ITERATIONS)
	$(TSAN)/check_engine $(SAN)/tiny.wrnn 20
	$(TSAN)/check_engine $(SAN)/tiny-subscale-int8.wrnn 20
	@if grep -q avx512f /proc/cpuinfo; then $(SAN)/approx_error; else echo "approx_error: no AVX-512, skipped"; fi

# The same program under ThreadSanitizer, for the two-thread paths (sequential: coarse and
# fine halves; subscale: halves of each step's sub-tensors) on a sequential and a subscale
# model; a few fuzz mutants only, the ASan build above does the fuzzing.
TSAN_FLAGS := -std=c++17 -O1 -g -fsanitize=thread
TSAN_OBJS := $(addprefix $(TSAN)/,$(CORE_X86) check_engine.o)

$(TSAN)/%.o: $(ENGINE)/%.cpp $(ENGINE_H)
	@mkdir -p $(TSAN)
	$(CXX) $(TSAN_FLAGS) $(ISA_$*) -c $< -o $@

$(TSAN)/check_engine.o: tests/native/check_engine.cpp $(ENGINE)/wrnn.h
	@mkdir -p $(TSAN)
	$(CXX) $(TSAN_FLAGS) -c $< -o $@

$(TSAN)/check_engine: $(TSAN_OBJS)
	$(CXX) $(TSAN_FLAGS) $^ -o $@

# The SIMD exp/sigmoid/tanh against libm (the whole program is built for AVX-512).
$(SAN)/approx_error: tests/native/approx_error.cpp $(ENGINE)/kernels_avx2.cpp $(ENGINE)/kernels_avx512.cpp $(ENGINE)/wrnn.h
	@mkdir -p $(SAN)
	$(CXX) -std=c++17 -O2 $(ISA_kernels_avx512) -Wno-unused-function $< -o $@

# The engine on AArch64 (issue: any CPU): cross-compiled with Debian's g++-aarch64-linux-gnu,
# linked statically and run under qemu-aarch64 (qemu-user; scripts/cross-tools.sh installs
# both when missing): compare_isas (NEON against scalar on every fixture) and
# check_engine (both ISAs on 1 and 2 threads, streaming, fold mode, a short loader fuzz).
# Emulation says nothing about speed on ARM, only about correctness.
ARM := build/aarch64
ARM_CXX := aarch64-linux-gnu-g++
ARM_FLAGS := -std=c++17 -O2 -Wall -Wextra
ARM_CORE := $(addprefix $(ARM)/,loader.o engine.o dispatch.o kernels_scalar.o kernels_neon.o probe.o)

# Kept between runs (make would delete them as intermediate files of the pattern rules).
.SECONDARY: $(ARM_CORE) $(SAN_CORE)

cross-tools:
	@command -v $(ARM_CXX) >/dev/null && command -v qemu-aarch64 >/dev/null || bash scripts/cross-tools.sh

$(ARM)/%.o: $(ENGINE)/%.cpp $(ENGINE_H) | cross-tools
	@mkdir -p $(ARM)
	$(ARM_CXX) $(ARM_FLAGS) -c $< -o $@

$(ARM)/%: tests/native/%.cpp $(ARM_CORE) $(ENGINE)/wrnn.h | cross-tools
	$(ARM_CXX) $(ARM_FLAGS) -static $< $(ARM_CORE) -o $@ -pthread

aarch64-check: cross-tools $(SAN)/tiny.wrnn $(ARM)/compare_isas $(ARM)/check_engine
	qemu-aarch64 $(ARM)/compare_isas $(SAN)/*.wrnn
	qemu-aarch64 $(ARM)/check_engine $(SAN)/tiny-int8.wrnn 50
	qemu-aarch64 $(ARM)/check_engine $(SAN)/tiny-sparse16x1-fp32.wrnn 50
	qemu-aarch64 $(ARM)/check_engine $(SAN)/tiny-subscale-int8.wrnn 50

lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

clean:
	rm -rf $(VENV) exp build src/*.egg-info
