//! The few system calls the store needs: shared mappings, open-file-description locks, flock.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// Maps `len` bytes of `file` from `offset`, shared (writes reach the file and other processes).
pub fn map(file: &File, offset: u64, len: usize, writable: bool) -> io::Result<NonNull<u8>> {
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: a fresh mapping of a file we hold open; the kernel picks the address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p as *mut u8).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// # Safety
/// `ptr`/`len` must be a mapping made by `map` that nothing references any more.
pub unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    libc::munmap(ptr.as_ptr() as *mut libc::c_void, len);
}

fn ofd_lock(file: &File, cmd: libc::c_int, kind: libc::c_short) -> io::Result<libc::flock> {
    // SAFETY: flock is plain data; zeroed means "whole file from offset 0", pid 0 as OFD locks require.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl with a valid fd and a flock we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl)
}

/// Takes the liveness lock of a store file without waiting. An open-file-description lock: not
/// dropped when the process closes another fd of the file (as POSIX record locks would be), and
/// shared with fork children through the inherited description, so a file stays live while any
/// process that may write into its mapping lives; the kernel drops it when the last one dies,
/// SIGKILL included.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    match ofd_lock(file, libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes a read lock on a store file opened read-only: it fails while the owner holds its write
/// lock, so holding it proves the owner is gone (the archiver keeps it until the file is deleted).
pub fn try_lock_shared(file: &File) -> io::Result<bool> {
    match ofd_lock(file, libc::F_OFD_SETLK, libc::F_RDLCK as libc::c_short) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether some process holds the liveness lock of this file (through another description).
pub fn is_locked(file: &File) -> io::Result<bool> {
    let fl = ofd_lock(file, libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short)?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// flock(2) on a whole file: `exclusive` or shared, blocking or not. Returns false when a
/// non-blocking attempt would have had to wait.
pub fn flock(file: &File, exclusive: bool, block: bool) -> io::Result<bool> {
    let mut op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    if !block {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: flock on a valid fd.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !block => return Ok(false),
            _ => return Err(e),
        }
    }
}

pub fn unlock(file: &File) {
    // SAFETY: flock on a valid fd.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
}
