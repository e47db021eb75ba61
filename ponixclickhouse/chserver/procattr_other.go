//go:build !linux

package chserver

import "syscall"

// procAttr puts the server in a process group of its own, so that a terminal's Ctrl-C reaches
// only the parent, which then stops the server in order. (Only Linux can also have the server
// killed when the parent dies; elsewhere a server whose parent died is stopped by the next
// Start on its directory.)
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
