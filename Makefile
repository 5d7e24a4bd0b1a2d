# Thin wrapper over CMake; the build system is CMakeLists.txt.
#   make               build (build/; ASAN=1 UBSAN=1 TSAN=1 WERROR=1 switch options)
#   make test          scripts/test: plain, ASan+UBSan and TSan test runs
#   make check         the plain build's tests only (scripts/test --quick)
#   make demo          scripts/demo
#   make install       cmake --install build [PREFIX=/usr/local]
#   make clean         remove the build trees
BUILD ?= build
JOBS ?= 2
CMAKE_OPTS = -DCMAKE_BUILD_TYPE=RelWithDebInfo $(if $(ASAN),-DASAN=ON) \
	$(if $(UBSAN),-DUBSAN=ON) $(if $(TSAN),-DTSAN=ON) $(if $(WERROR),-DWERROR=ON) \
	$(if $(PREFIX),-DCMAKE_INSTALL_PREFIX=$(PREFIX))

all:
	cmake -S . -B $(BUILD) $(CMAKE_OPTS)
	cmake --build $(BUILD) -j $(JOBS)

test:
	scripts/test

check:
	scripts/test --quick

demo:
	scripts/demo

install: all
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf build build-asan build-tsan

.PHONY: all test check demo install clean
