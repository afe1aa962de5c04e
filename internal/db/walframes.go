//go:build !js

package db

import (
	"errors"
	"sync"
	"sync/atomic"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// The writer's WAL frames, gathered into one write per commit.
//
// SQLite writes a WAL frame as two pwrite(2) calls, its 24-byte header
// and then the page (walWriteOneFrame), so a group commit of 70 pages
// made 140 system calls before its fsync. walFramesVFS is SQLite's own
// VFS ("unix") with one difference: a WAL file's writes that follow each
// other in the file are copied into a buffer, and the buffer is written
// at once (in writes of at most walWriteMax) before anything else is
// done to that file — before every sync, read, truncation, size query,
// file control and close, before a write elsewhere in the file, and when
// it is full. A commit syncs the WAL before it publishes its frames to readers (the
// writer runs with synchronous=FULL; walFrames syncs, then appends to the
// WAL index), so no reader and no recovery after a crash sees a frame
// that is not in the file, and a commit returns only once its frames
// are written and synced, as without the buffer. A write that fails
// when the buffer is written fails the call that wrote it (the commit's
// sync, say), and SQLite rolls the transaction back. Every other file —
// the database, its shared-memory index, temporary files — is SQLite's
// own file object, untouched. docs/benchmarks.md, "A commit's WAL
// frames in one write", has the measurement.
//
// The VFS and its methods live in C memory (modernc.org/libc), as
// SQLite holds pointers to them; a WAL file's buffer too, as SQLite's
// unix VFS passes it to the system call. The Go functions below are
// SQLite's callbacks in modernc.org/sqlite's convention: a pointer to
// the function value in place of a C function pointer, the thread's
// *libc.TLS first.

// walBufferSize is the most one WAL file gathers before it writes: a
// commit of up to 254 pages is gathered whole. A busy node's commit is
// 70–90.
const walBufferSize = 1 << 20

// walFile is the head of a WAL file object: SQLite's sqlite3_file (its
// methods, ours), the gathered bytes, and then the unix VFS's own file
// object at walInner.
type walFile struct {
	methods uintptr // *sqlite3_io_methods: walMethods
	buf     uintptr // C memory of walBufferSize bytes, allocated at the first write; 0 before
	n       int64   // bytes gathered in buf
	start   int64   // the file offset of buf's first byte
}

const walInner = unsafe.Sizeof(walFile{})

// walStats counts the WAL writes SQLite asked for and those the VFS made,
// for the tests.
var walStats struct{ asked, made atomic.Int64 }

var walVFS struct {
	once    sync.Once
	inner   uintptr // the unix VFS
	methods uintptr // walMethods in C memory
	err     error
}

// walFramesVFS registers the VFS once and returns its name, for a
// writer's DSN (vfs=…).
func walFramesVFS() (string, error) {
	walVFS.once.Do(func() { walVFS.err = registerWALVFS() })
	return walVFSName, walVFS.err
}

const walVFSName = "kanal-wal"

var errNoVFS = errors.New("db: cannot register the WAL-gathering SQLite VFS over the unix VFS")

func registerWALVFS() error {
	tls := libc.NewTLS()
	defer tls.Close()
	inner := sqlite3.Xsqlite3_vfs_find(tls, 0)
	if inner == 0 {
		return errNoVFS
	}
	iv := (*sqlite3.Tsqlite3_vfs)(cptr(inner))
	if iv.FiVersion < 3 {
		return errNoVFS
	}
	vfs := libc.Xcalloc(tls, 1, libc.Tsize_t(unsafe.Sizeof(sqlite3.Tsqlite3_vfs{})))
	methods := libc.Xcalloc(tls, 1, libc.Tsize_t(unsafe.Sizeof(sqlite3.Tsqlite3_io_methods{})))
	name, err := libc.CString(walVFSName)
	if vfs == 0 || methods == 0 || err != nil {
		return errNoVFS
	}
	v := (*sqlite3.Tsqlite3_vfs)(cptr(vfs))
	*v = *iv
	v.FpNext = 0
	v.FzName = name
	v.FszOsFile = iv.FszOsFile + int32(walInner)
	v.FxOpen = cfunc(walOpen)

	// Version 1: SQLite maps and locks shared memory and maps pages only
	// through the database file, never through its WAL, so a WAL file
	// needs none of the methods versions 2 and 3 add.
	m := (*sqlite3.Tsqlite3_io_methods)(cptr(methods))
	m.FiVersion = 1
	m.FxClose = cfunc(walClose)
	m.FxRead = cfunc(walRead)
	m.FxWrite = cfunc(walWrite)
	m.FxTruncate = cfunc(walTruncate)
	m.FxSync = cfunc(walSync)
	m.FxFileSize = cfunc(walFileSize)
	m.FxLock = cfunc(walLock)
	m.FxUnlock = cfunc(walUnlock)
	m.FxCheckReservedLock = cfunc(walCheckReservedLock)
	m.FxFileControl = cfunc(walFileControl)
	m.FxSectorSize = cfunc(walSectorSize)
	m.FxDeviceCharacteristics = cfunc(walDeviceCharacteristics)

	walVFS.inner, walVFS.methods = inner, methods
	if rc := sqlite3.Xsqlite3_vfs_register(tls, vfs, 0); rc != sqlite3.SQLITE_OK {
		return errNoVFS
	}
	return nil
}

// walOpen opens a file with the unix VFS; a WAL file gets walMethods
// and the unix file object after its head.
func walOpen(tls *libc.TLS, _ uintptr, zName uintptr, pFile uintptr, flags int32, pOutFlags uintptr) int32 {
	iv := (*sqlite3.Tsqlite3_vfs)(cptr(walVFS.inner))
	open := *(*func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&iv.FxOpen))
	if flags&sqlite3.SQLITE_OPEN_WAL == 0 {
		return open(tls, walVFS.inner, zName, pFile, flags, pOutFlags)
	}
	f := (*walFile)(cptr(pFile))
	*f = walFile{}
	rc := open(tls, walVFS.inner, zName, pFile+walInner, flags, pOutFlags)
	if (*sqlite3.Tsqlite3_file)(cptr(pFile+walInner)).FpMethods != 0 {
		f.methods = walVFS.methods
	}
	return rc
}

// innerMethods returns the unix VFS's methods of the WAL file at p.
func innerMethods(p uintptr) *sqlite3.Tsqlite3_io_methods {
	return (*sqlite3.Tsqlite3_io_methods)(cptr((*sqlite3.Tsqlite3_file)(cptr(p + walInner)).FpMethods))
}

// flush writes what f has gathered.
func flush(tls *libc.TLS, p uintptr) int32 {
	f := (*walFile)(cptr(p))
	if f.n == 0 {
		return sqlite3.SQLITE_OK
	}
	n := f.n
	f.n = 0
	for done := int64(0); done < n; {
		k := min(n-done, walWriteMax)
		if rc := innerWrite(tls, p, f.buf+uintptr(done), int32(k), f.start+done); rc != sqlite3.SQLITE_OK {
			return rc
		}
		done += k
	}
	return sqlite3.SQLITE_OK
}

// innerWrite writes amt bytes at buf to the WAL file at p through the
// unix VFS.
func innerWrite(tls *libc.TLS, p, buf uintptr, amt int32, off int64) int32 {
	walStats.made.Add(1)
	write := *(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&innerMethods(p).FxWrite))
	return write(tls, p+walInner, buf, amt, off)
}

// walWriteMax is the most the unix VFS writes in one call: its
// seekAndWrite masks a write's length with 0x1ffff, so it takes a
// longer write in parts and fails one of a multiple of 128 KiB. A
// commit of 70 frames (288 KiB) is three writes.
const walWriteMax = 0x1f000

func walWrite(tls *libc.TLS, p uintptr, pBuf uintptr, amt int32, off int64) int32 {
	walStats.asked.Add(1)
	f := (*walFile)(cptr(p))
	if f.n > 0 && (off != f.start+f.n || f.n+int64(amt) > walBufferSize || amt > walWriteMax) {
		if rc := flush(tls, p); rc != sqlite3.SQLITE_OK {
			return rc
		}
	}
	if f.buf == 0 && amt <= walWriteMax {
		f.buf = libc.Xmalloc(tls, walBufferSize)
	}
	// Nothing is gathered here: a write longer than the unix VFS takes
	// at once (SQLite's are a page at most) or no memory for the buffer.
	if f.buf == 0 || amt > walWriteMax {
		return innerWrite(tls, p, pBuf, amt, off)
	}
	if f.n == 0 {
		f.start = off
	}
	copy(unsafe.Slice((*byte)(cptr(f.buf+uintptr(f.n))), amt), unsafe.Slice((*byte)(cptr(pBuf)), amt))
	f.n += int64(amt)
	return sqlite3.SQLITE_OK
}

func walClose(tls *libc.TLS, p uintptr) int32 {
	rc := flush(tls, p)
	f := (*walFile)(cptr(p))
	if f.buf != 0 {
		libc.Xfree(tls, f.buf)
		f.buf = 0
	}
	closeFn := *(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&innerMethods(p).FxClose))
	if crc := closeFn(tls, p+walInner); rc == sqlite3.SQLITE_OK {
		rc = crc
	}
	return rc
}

func walRead(tls *libc.TLS, p uintptr, pBuf uintptr, amt int32, off int64) int32 {
	if rc := flush(tls, p); rc != sqlite3.SQLITE_OK {
		return rc
	}
	read := *(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&innerMethods(p).FxRead))
	return read(tls, p+walInner, pBuf, amt, off)
}

func walTruncate(tls *libc.TLS, p uintptr, size int64) int32 {
	if rc := flush(tls, p); rc != sqlite3.SQLITE_OK {
		return rc
	}
	fn := *(*func(*libc.TLS, uintptr, int64) int32)(unsafe.Pointer(&innerMethods(p).FxTruncate))
	return fn(tls, p+walInner, size)
}

func walSync(tls *libc.TLS, p uintptr, flags int32) int32 {
	if rc := flush(tls, p); rc != sqlite3.SQLITE_OK {
		return rc
	}
	fn := *(*func(*libc.TLS, uintptr, int32) int32)(unsafe.Pointer(&innerMethods(p).FxSync))
	return fn(tls, p+walInner, flags)
}

func walFileSize(tls *libc.TLS, p uintptr, pSize uintptr) int32 {
	if rc := flush(tls, p); rc != sqlite3.SQLITE_OK {
		return rc
	}
	fn := *(*func(*libc.TLS, uintptr, uintptr) int32)(unsafe.Pointer(&innerMethods(p).FxFileSize))
	return fn(tls, p+walInner, pSize)
}

func walFileControl(tls *libc.TLS, p uintptr, op int32, pArg uintptr) int32 {
	if rc := flush(tls, p); rc != sqlite3.SQLITE_OK {
		return rc
	}
	fn := *(*func(*libc.TLS, uintptr, int32, uintptr) int32)(unsafe.Pointer(&innerMethods(p).FxFileControl))
	return fn(tls, p+walInner, op, pArg)
}

// The methods below neither read nor write the file's bytes; they go to
// the unix VFS as they are.

func walLock(tls *libc.TLS, p uintptr, lock int32) int32 {
	fn := *(*func(*libc.TLS, uintptr, int32) int32)(unsafe.Pointer(&innerMethods(p).FxLock))
	return fn(tls, p+walInner, lock)
}

func walUnlock(tls *libc.TLS, p uintptr, lock int32) int32 {
	fn := *(*func(*libc.TLS, uintptr, int32) int32)(unsafe.Pointer(&innerMethods(p).FxUnlock))
	return fn(tls, p+walInner, lock)
}

func walCheckReservedLock(tls *libc.TLS, p uintptr, pResOut uintptr) int32 {
	fn := *(*func(*libc.TLS, uintptr, uintptr) int32)(unsafe.Pointer(&innerMethods(p).FxCheckReservedLock))
	return fn(tls, p+walInner, pResOut)
}

func walSectorSize(tls *libc.TLS, p uintptr) int32 {
	fn := *(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&innerMethods(p).FxSectorSize))
	return fn(tls, p+walInner)
}

func walDeviceCharacteristics(tls *libc.TLS, p uintptr) int32 {
	fn := *(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&innerMethods(p).FxDeviceCharacteristics))
	return fn(tls, p+walInner)
}

// cfunc returns f as a C function pointer in modernc.org/sqlite's
// convention: the pointer to the function value's code and closure.
func cfunc(f any) uintptr {
	type iface [2]uintptr
	return (*iface)(unsafe.Pointer(&f))[1]
}

// cptr turns an address in C memory into a pointer. The memory is
// modernc.org/libc's, outside Go's heap, so the collector neither moves
// nor frees it.
func cptr(p uintptr) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Pointer(&p))
}
