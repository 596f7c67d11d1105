# Makefile for p2v.  `make` builds ./p2v; `make check` runs the unit tests
# and the bats suite; `make check-asan` runs the unit tests under ASan.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man

CC ?= cc
PKGS = json-c zlib libguestfs libcrypto blkid ext2fs com_err libarchive
# p2v batch: plans are INI files
PKGS += inih
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ljson-c -lz -lguestfs -lcrypto -lblkid -lext2fs -lcom_err -larchive -linih)

WARN = -Wall -Wextra -Wshadow -Wformat=2 -Wno-format-nonliteral \
       -Wmissing-prototypes -Wstrict-prototypes
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
             -I. -Icommon -Iformats -Iconvert -Iinject -Icapture $(PKG_CFLAGS) -pthread
LIBS = $(PKG_LIBS) -pthread

# Everything but the entry point goes into a static library that the
# unit tests link too.
LIB_SRCS = $(wildcard common/*.c formats/*.c convert/*.c inject/*.c capture/*.c)
LIB_OBJS = $(LIB_SRCS:.c=.o)
UNIT_SRCS = $(wildcard tests/unit/test-*.c)
UNIT_BINS = $(UNIT_SRCS:.c=)

.PHONY: all check check-unit check-bats check-asan install clean bench demo

all: p2v tests/tools/gen-image

%.o: %.c $(wildcard common/*.h formats/*.h convert/*.h inject/*.h capture/*.h)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

libp2v.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

p2v: p2v.o libp2v.a
	$(CC) $(ALL_CFLAGS) -o $@ p2v.o libp2v.a $(LIBS)

tests/unit/test-%: tests/unit/test-%.c tests/unit/unit.h libp2v.a
	$(CC) $(ALL_CFLAGS) -Itests/unit -o $@ $< libp2v.a $(LIBS)

tests/tools/gen-image: tests/tools/gen-image.c
	$(CC) $(ALL_CFLAGS) -o $@ $<

check-unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; ./$$t; done

# Test files run two at a time (most of their time is one TCG vCPU each);
# the tests inside a file stay in order.  BATS_JOBS=1 runs them serially.
BATS_JOBS ?= 2
check-bats: p2v tests/tools/gen-image
	PATH="$(CURDIR):$$PATH" bats $(if $(filter-out 1,$(BATS_JOBS)),--jobs $(BATS_JOBS) --no-parallelize-within-files) --timing tests/

check: all check-unit check-bats

# The unit tests again, built from scratch with AddressSanitizer and UBSan
# in a separate tree so the normal objects stay untouched.
ASAN_DIR = .asan-build
check-asan:
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)
	cp -r common formats convert inject capture tests p2v.c Makefile $(ASAN_DIR)/
	$(MAKE) -C $(ASAN_DIR) check-unit \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  LIBS="$(LIBS) -fsanitize=address,undefined"

install: p2v
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 755 p2v $(DESTDIR)$(BINDIR)/p2v
	install -m 644 man/p2v.1 $(DESTDIR)$(MANDIR)/man1/p2v.1

bench: p2v tests/tools/gen-image
	bench/convert.sh

# The newcomer's first run: build (or reuse) an example physical Debian
# server disk, then the main job on it: convert to compressed qcow2,
# inject, and boot-test; qemu-img check proves the image itself.
demo: p2v
	mkdir -p example
	img=$$(tests/fixtures/build-server.sh debian-bios) && \
	  ./p2v convert "$$img" -o example/server.qcow2 --compress --force
	qemu-img check example/server.qcow2

# The bootable capture ISO: iso/build-iso.sh, cached in /var/cache/p2v-iso.
.PHONY: iso
iso: p2v
	iso/build-iso.sh -o p2v-capture.iso

clean:
	rm -f p2v p2v.o libp2v.a $(LIB_OBJS) $(UNIT_BINS) tests/tools/gen-image
	rm -rf $(ASAN_DIR)
	rm -f p2v-capture.iso
