package chserver

import "syscall"

// procAttr puts the server in a process group of its own, so that a terminal's Ctrl-C reaches
// only the parent, which then stops the server in order; and has the kernel kill the server
// when the parent dies without stopping it (a SIGKILL, a test binary that panics at its
// timeout), rather than leave it running with no one to stop it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
