package chserver

import "syscall"

// procAttr puts the server in a process group of its own, so that a terminal's Ctrl-C reaches
// only the parent, which then stops the server in order; and has the kernel kill the server
// when the parent dies without stopping it (a SIGKILL, a test binary that panics at its
// timeout), rather than leave it running with no one to stop it.
//
// Linux sends Pdeathsig when the thread that started the child exits, not only the process
// (golang/go#27505). Go keeps its threads, except one locked by runtime.LockOSThread whose
// goroutine ends locked: so Start must not be called from such a goroutine.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
