package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// coldResidency is the page-cache residency above which an eviction counts
// as failed: fadvise is followed by drop_caches (as root), and the report
// warns if the file stays above it.
const coldResidency = 0.02

// dropCachesPath is the kernel's knob to drop the clean page cache of the
// whole machine; writing it needs root.
const dropCachesPath = "/proc/sys/vm/drop_caches"

// residency counts the pages of a directory's files held in the page cache.
type residency struct {
	resident, total int64 // pages
}

func (r residency) fraction() float64 {
	if r.total == 0 {
		return 0
	}
	return float64(r.resident) / float64(r.total)
}

// eviction says how a directory's files were evicted and how much of them
// was left in the page cache.
type eviction struct {
	method string // "fadvise" or "fadvise+drop_caches"
	after  residency
}

// regularFiles returns the regular files under dir.
func regularFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench: list %s: %w", dir, err)
	}
	return files, nil
}

// evictDir drops every file under dir from the page cache: fsync, so no
// page is dirty, then posix_fadvise(POSIX_FADV_DONTNEED) on the whole file,
// which needs no privilege but leaves pages some process still maps. If
// more than coldResidency of the pages stay cached and the process runs as
// root, it syncs and writes 1 to /proc/sys/vm/drop_caches, which drops the
// clean page cache of the whole machine. The store must be closed.
func evictDir(dir string) (eviction, error) {
	files, err := regularFiles(dir)
	if err != nil {
		return eviction{}, err
	}
	for _, path := range files {
		if err := fadviseDontNeed(path); err != nil {
			return eviction{}, err
		}
	}
	ev := eviction{method: "fadvise"}
	if ev.after, err = dirResidency(dir); err != nil {
		return ev, err
	}
	if ev.after.fraction() > coldResidency && os.Geteuid() == 0 {
		syscall.Sync()
		if err := os.WriteFile(dropCachesPath, []byte("1"), 0); err != nil {
			return ev, fmt.Errorf("bench: drop caches: %w", err)
		}
		ev.method = "fadvise+drop_caches"
		if ev.after, err = dirResidency(dir); err != nil {
			return ev, err
		}
	}
	return ev, nil
}

func fadviseDontNeed(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("bench: evict: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("bench: evict: fsync %s: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("bench: evict: fadvise %s: %w", path, err)
	}
	return nil
}

// dirResidency counts the pages of dir's files that are in the page cache,
// with mincore(2) on a fresh read-only mapping of each file (mapping a file
// reads none of it).
func dirResidency(dir string) (residency, error) {
	files, err := regularFiles(dir)
	if err != nil {
		return residency{}, err
	}
	var r residency
	for _, path := range files {
		fr, err := fileResidency(path)
		if err != nil {
			return residency{}, err
		}
		r.resident += fr.resident
		r.total += fr.total
	}
	return r, nil
}

func fileResidency(path string) (residency, error) {
	f, err := os.Open(path)
	if err != nil {
		return residency{}, fmt.Errorf("bench: residency: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return residency{}, fmt.Errorf("bench: residency: %w", err)
	}
	if info.Size() == 0 {
		return residency{}, nil
	}
	page := int64(os.Getpagesize())
	data, err := unix.Mmap(int(f.Fd()), 0, int(info.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return residency{}, fmt.Errorf("bench: residency: mmap %s: %w", path, err)
	}
	defer unix.Munmap(data)
	vec := make([]byte, (info.Size()+page-1)/page)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return residency{}, fmt.Errorf("bench: residency: mincore %s: %w", path, errno)
	}
	r := residency{total: int64(len(vec))}
	for _, b := range vec {
		r.resident += int64(b & 1)
	}
	return r, nil
}

// warmDir reads every file under dir once, so that its pages are in the
// page cache whatever evicted them before.
func warmDir(dir string) error {
	files, err := regularFiles(dir)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("bench: warm: %w", err)
		}
		for err == nil {
			_, err = f.Read(buf)
		}
		f.Close()
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("bench: warm %s: %w", path, err)
		}
	}
	return nil
}
