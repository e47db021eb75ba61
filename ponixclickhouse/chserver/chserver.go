// Package chserver runs a local clickhouse-server binary as a child process with a generated
// configuration: a data directory, its own ports, and a single user. Tests use it (through
// chtest) as a throwaway server in a temporary directory; a development setup can use it with a
// persistent directory.
//
// The binary comes from the operating system (on Debian: apt-get install -y clickhouse-server).
// The generated configuration uses the <yandex> root element, which every ClickHouse release
// from 18.x to 25.x accepts.
package chserver

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ponix-go/ponix/runner/backoff"
)

var validUser = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// ErrBinaryNotFound is returned by Start when no clickhouse-server binary can be found.
var ErrBinaryNotFound = errors.New("clickhouse-server binary not found (install it with: apt-get install -y clickhouse-server)")

// Config describes the server to start. Dir is required; every other field has a default.
type Config struct {
	// Dir holds the generated configuration, the data and the logs. It is created if missing and
	// is kept by Stop, so a persistent directory keeps its data between runs.
	Dir string
	// TCPPort is the native protocol port; 0 picks a free port.
	TCPPort int
	// HTTPPort is the HTTP port; 0 picks a free port.
	HTTPPort int
	// TLS, if set, adds a native protocol port that speaks TLS ([Server.SecureAddr]).
	TLS *TLSConfig
	// TCPSecurePort is the native protocol TLS port (used only with TLS); 0 picks a free port.
	TCPSecurePort int
	// ListenHost is the address to listen on; the default is 127.0.0.1.
	ListenHost string
	// User is the name of the only user; the default is "default".
	User string
	// Password of User; empty means no password.
	Password string
	// Binary is the clickhouse-server executable; the default is clickhouse-server from PATH,
	// then /usr/bin/clickhouse-server.
	Binary string
	// StartTimeout bounds the wait until the server accepts native connections (default 60s).
	StartTimeout time.Duration
	// Logger receives lifecycle messages (default: slog.Default()).
	Logger *slog.Logger
}

// TLSConfig configures the server's TLS port. Files are PEM.
type TLSConfig struct {
	// CertFile and KeyFile are the server certificate and its key; both are required.
	CertFile, KeyFile string
	// CAFile, if set, makes the server require client certificates signed by this CA.
	CAFile string
}

// Server is a running clickhouse-server child process.
type Server struct {
	cfg     Config
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logPath string
	// errLogPath is the error log; errLogStart is its size before this run started.
	errLogPath  string
	errLogStart int64
	stop        sync.Once
	stopErr     error

	// The users file as SetPassword and SetReadOnly last wrote it.
	usersMu  sync.Mutex
	password *string // nil: cfg.Password
	readOnly bool
}

// Start writes the configuration into cfg.Dir, starts clickhouse-server and waits until it
// accepts native connections. The caller must call Stop. On Linux the server is killed when
// the process that started it dies without calling Stop — or when the OS thread that called
// Start exits, which Go does only for a goroutine that ends locked to its thread
// (runtime.LockOSThread): do not call Start from one.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("chserver: Config.Dir is required")
	}
	if cfg.ListenHost == "" {
		cfg.ListenHost = "127.0.0.1"
	}
	if cfg.User == "" {
		cfg.User = "default"
	}
	if !validUser.MatchString(cfg.User) {
		return nil, fmt.Errorf("chserver: Config.User %q is not a valid user name (letters, digits, '_', '-', '.'; starting with a letter or '_')", cfg.User)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	bin, err := findBinary(cfg.Binary)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("chserver: dir %q: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	if err := cfg.TLS.validate(); err != nil {
		return nil, err
	}
	// Ports picked here are free when picked but not held: another process can take one before
	// clickhouse-server binds it. Such a start is retried with fresh ports.
	for attempt := 1; ; attempt++ {
		c := cfg
		picked, err := pickFreePorts(&c)
		if err != nil {
			return nil, err
		}
		s, err := launch(ctx, c, bin)
		if err == nil || !picked || attempt == maxStartAttempts || !errors.Is(err, errPortTaken) {
			return s, err
		}
		cfg.Logger.Warn("clickhouse-server lost a picked port to another process; retrying with new ports",
			"attempt", attempt, "err", err)
	}
}

// validate checks that t (nil: no TLS) names readable files.
func (t *TLSConfig) validate() error {
	if t == nil {
		return nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return errors.New("chserver: Config.TLS needs CertFile and KeyFile")
	}
	for _, f := range []string{t.CertFile, t.KeyFile, t.CAFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("chserver: Config.TLS: %w", err)
		}
	}
	return nil
}

// pickFreePorts sets each port of c that is 0 (the TLS port only with TLS) to a free port,
// distinct from the others and from the ports c already names. It reports whether it picked any.
func pickFreePorts(c *Config) (bool, error) {
	ports := []*int{&c.TCPPort, &c.HTTPPort}
	if c.TLS != nil {
		ports = append(ports, &c.TCPSecurePort)
	}
	var unset []*int
	var set []int
	for _, p := range ports {
		if *p == 0 {
			unset = append(unset, p)
		} else {
			set = append(set, *p)
		}
	}
	if len(unset) == 0 {
		return false, nil
	}
	free, err := freePorts(c.ListenHost, len(unset), set...)
	if err != nil {
		return false, err
	}
	for i, p := range unset {
		*p = free[i]
	}
	return true, nil
}

// maxStartAttempts bounds the starts Start tries when a picked port is taken meanwhile.
const maxStartAttempts = 3

// errPortTaken marks a start that failed because a port was already in use.
var errPortTaken = errors.New("a port is already in use")

// launch writes the configuration for cfg (whose ports are set), starts the server and waits
// until it is ready.
func launch(ctx context.Context, cfg Config, bin string) (*Server, error) {
	dir := cfg.Dir
	if err := claimPorts(cfg, dir); err != nil {
		return nil, err
	}
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("chserver: create %s: %w", filepath.Join(dir, d), err)
		}
	}
	configPath := filepath.Join(dir, "config.xml")
	usersPath := filepath.Join(dir, "users.xml")
	logPath := filepath.Join(dir, "log", "clickhouse-server.log")
	if err := os.WriteFile(configPath, serverConfig(cfg, usersPath, logPath), 0o644); err != nil {
		return nil, fmt.Errorf("chserver: write config: %w", err)
	}
	if err := os.WriteFile(usersPath, usersConfig(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("chserver: write users config: %w", err)
	}

	errLogPath := filepath.Join(dir, "log", "clickhouse-server.err.log")
	var errLogStart int64 // where this run's lines begin in a kept error log
	if st, err := os.Stat(errLogPath); err == nil {
		errLogStart = st.Size()
	}

	cmd := exec.Command(bin, "--config-file="+configPath)
	cmd.Dir = dir
	out, err := os.OpenFile(filepath.Join(dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chserver: open stdout log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("chserver: start %s: %w", bin, err)
	}
	s := &Server{cfg: cfg, cmd: cmd, done: make(chan struct{}), logPath: logPath, errLogPath: errLogPath, errLogStart: errLogStart}
	go func() {
		s.waitErr = cmd.Wait()
		_ = out.Close()
		close(s.done)
	}()
	cfg.Logger.Info("clickhouse-server starting", "binary", bin, "dir", dir, "addr", s.Addr(), "pid", cmd.Process.Pid)
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop(context.Background())
		return nil, err
	}
	cfg.Logger.Info("clickhouse-server ready", "addr", s.Addr())
	return s, nil
}

// claimPorts makes sure the native and HTTP ports are free. A clickhouse-server
// left running on this very Dir (the previous run was killed before it could
// stop it) is stopped first; any other holder of a port is an error naming it,
// so that Start never mistakes a foreign server for the one it started.
func claimPorts(cfg Config, dir string) error {
	busy := func() (string, bool) {
		for _, p := range cfg.ports() {
			addr := net.JoinHostPort(cfg.ListenHost, strconv.Itoa(p))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return addr, true
			}
			_ = l.Close()
		}
		return "", false
	}
	addr, isBusy := busy()
	if !isBusy {
		return nil
	}
	pid, ok := leftoverPID(dir)
	if !ok {
		// errPortTaken: a port Start picked may be taken between the pick and this check (a
		// test starting another server in parallel, seen in CI); Start picks again.
		return fmt.Errorf("chserver: %s is already in use by another process (another ClickHouse?); choose another port (%w)", addr, errPortTaken)
	}
	cfg.Logger.Warn("stopping a clickhouse-server left running on this directory", "pid", pid, "dir", dir)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	stopped, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	poll := backoff.Constant(100 * time.Millisecond).Start()
	for syscall.Kill(pid, 0) == nil {
		if poll.Wait(stopped) != nil {
			break // still running after 30s: killed below
		}
	}
	cancel()
	if syscall.Kill(pid, 0) == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		time.Sleep(500 * time.Millisecond)
	}
	if addr, isBusy := busy(); isBusy {
		return fmt.Errorf("chserver: %s is still in use after stopping the leftover clickhouse-server (pid %d)", addr, pid)
	}
	return nil
}

// leftoverPID returns the pid of a running clickhouse-server whose command line
// names this directory's config file.
func leftoverPID(dir string) (int, bool) {
	want := "--config-file=" + filepath.Join(dir, "config.xml")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(cmdline), "\x00") {
			if arg == want {
				return pid, true
			}
		}
	}
	return 0, false
}

// Addr is the native protocol address, host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort(s.cfg.ListenHost, strconv.Itoa(s.cfg.TCPPort))
}

// SecureAddr is the native protocol TLS address, host:port; empty without Config.TLS.
func (s *Server) SecureAddr() string {
	if s.cfg.TLS == nil {
		return ""
	}
	return net.JoinHostPort(s.cfg.ListenHost, strconv.Itoa(s.cfg.TCPSecurePort))
}

// ports lists the ports the server listens on.
func (c Config) ports() []int {
	if c.TLS != nil {
		return []int{c.TCPPort, c.HTTPPort, c.TCPSecurePort}
	}
	return []int{c.TCPPort, c.HTTPPort}
}

// HTTPAddr is the HTTP address, host:port.
func (s *Server) HTTPAddr() string {
	return net.JoinHostPort(s.cfg.ListenHost, strconv.Itoa(s.cfg.HTTPPort))
}

// User is the name of the configured user.
func (s *Server) User() string { return s.cfg.User }

// Password is the password of the configured user.
func (s *Server) Password() string { return s.cfg.Password }

// Dir is the absolute directory that holds the configuration, data and logs.
func (s *Server) Dir() string { return s.cfg.Dir }

// LogPath is the server's main log file.
func (s *Server) LogPath() string { return s.logPath }

// Done is closed when the server process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// Stop sends SIGTERM and waits for the process to exit; when ctx ends first it kills the
// process. Stop is idempotent and keeps Dir.
func (s *Server) Stop(ctx context.Context) error {
	s.stop.Do(func() {
		select {
		case <-s.done:
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-ctx.Done():
			_ = s.cmd.Process.Kill()
			<-s.done
			s.stopErr = fmt.Errorf("chserver: killed after stop timeout: %w", ctx.Err())
		}
		s.cfg.Logger.Info("clickhouse-server stopped", "addr", s.Addr())
	})
	return s.stopErr
}

// Kill ends the server with SIGKILL, as a crash would, and waits for the process to exit. It
// keeps Dir; Start on the same Dir and ports brings the server back with its data.
func (s *Server) Kill() error {
	s.stop.Do(func() {
		select {
		case <-s.done:
			return
		default:
		}
		_ = s.cmd.Process.Kill()
		<-s.done
		s.cfg.Logger.Info("clickhouse-server killed", "addr", s.Addr())
	})
	return nil
}

// SetPassword changes the password of the server's user in its users file. The server reloads
// the file by itself within a few seconds; connections opened before stay authenticated.
func (s *Server) SetPassword(password string) error {
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	s.password = &password
	return s.writeUsers()
}

// SetReadOnly gives the server's user a profile with readonly=1 (true) or the default profile
// back (false), in its users file: an INSERT is then refused with code 164 (READONLY). The
// server reloads the file by itself within a few seconds; connections opened before keep the
// profile they logged in with.
func (s *Server) SetReadOnly(readOnly bool) error {
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	s.readOnly = readOnly
	return s.writeUsers()
}

func (s *Server) writeUsers() error {
	c := s.cfg
	if s.password != nil {
		c.Password = *s.password
	}
	path := filepath.Join(c.Dir, "users.xml")
	var before time.Time
	if fi, err := os.Stat(path); err == nil {
		before = fi.ModTime()
	}
	if err := os.WriteFile(path, usersConfigProfile(c, s.readOnly), 0o600); err != nil {
		return fmt.Errorf("chserver: write users config: %w", err)
	}
	// The server notices a changed file by its modification time in whole seconds: a second
	// write within the same second as the one before would go unnoticed.
	if fi, err := os.Stat(path); err == nil && fi.ModTime().Unix() <= before.Unix() {
		next := time.Unix(before.Unix()+1, 0)
		if err := os.Chtimes(path, next, next); err != nil {
			return fmt.Errorf("chserver: touch users config: %w", err)
		}
	}
	return nil
}

// Pause stops the server process with SIGSTOP, as a hung server: it keeps its connections
// open and its kernel still accepts new ones, but nothing answers. Resume continues it.
//
// A signal is delivered asynchronously: a thread running on another core goes on for a moment
// after kill returns, long enough to answer a request sent at once. Where there is a /proc,
// Pause returns once every thread of the process is stopped.
func (s *Server) Pause() error {
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("chserver: pause: %w", err)
	}
	if err := waitStopped(fmt.Sprintf("/proc/%d/task", s.cmd.Process.Pid), 10*time.Second); err != nil {
		return fmt.Errorf("chserver: pause: %w", err)
	}
	return nil
}

// waitStopped waits until every thread listed in tasks (a /proc/PID/task directory) is stopped.
// Without such a directory (no procfs) there is nothing to wait on.
func waitStopped(tasks string, within time.Duration) error {
	if _, err := os.Stat(tasks); err != nil {
		return nil
	}
	deadline := time.Now().Add(within)
	for {
		running, err := runningThreads(tasks)
		if err != nil || running == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d threads still running %s after SIGSTOP", running, within)
		}
		time.Sleep(time.Millisecond)
	}
}

// runningThreads counts the threads in tasks whose state (/proc/PID/task/TID/stat, see
// procState) is not stopped ("T", or "t" when traced) nor dead ("Z", "X": a server that
// exited answers nothing either).
func runningThreads(tasks string) (int, error) {
	entries, err := os.ReadDir(tasks)
	if err != nil {
		return 0, err
	}
	running := 0
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join(tasks, e.Name(), "stat"))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended
		}
		if err != nil {
			return 0, err
		}
		state, ok := procState(stat)
		if !ok {
			return 0, fmt.Errorf("%s/%s/stat: no state in %q", tasks, e.Name(), stat)
		}
		switch state {
		case 'T', 't', 'Z', 'X':
		default:
			running++
		}
	}
	return running, nil
}

// procState reads the state of a process or thread from its /proc stat line: the field after
// the command name, which is in parentheses and may itself hold ')' (so the last one ends it).
func procState(stat []byte) (byte, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0, false
	}
	return stat[i+2], true
}

// Resume continues a server stopped by Pause (SIGCONT).
func (s *Server) Resume() error {
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("chserver: resume: %w", err)
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	retry := backoff.Constant(50 * time.Millisecond).Start()
	for {
		if err := handshake(ctx, s.Addr()); err == nil {
			return nil
		}
		select {
		case <-s.done:
			tail := s.tail()
			err := fmt.Errorf("chserver: clickhouse-server exited during start (%v); last log lines:\n%s", s.waitErr, tail)
			if s.startErrorsContain("Address already in use") {
				err = fmt.Errorf("%w (%w)", err, errPortTaken)
			}
			return err
		default:
		}
		if retry.Wait(ctx) != nil {
			return fmt.Errorf("chserver: clickhouse-server not ready on %s after %s: %w; last log lines:\n%s", s.Addr(), s.cfg.StartTimeout, ctx.Err(), s.tail())
		}
	}
}

// handshake checks that the native port accepts a connection and answers a ClickHouse hello
// with a server hello or an exception packet: either way the server is up.
func handshake(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	// ClientHello: packet 0, client name, major, minor, revision, database, user, password.
	var b []byte
	b = append(b, 0)
	b = appendString(b, "chserver")
	b = append(b, 1, 1)
	b = appendUvarint(b, 54213)
	b = appendString(b, "")
	b = appendString(b, "")
	b = appendString(b, "")
	if _, err := c.Write(b); err != nil {
		return err
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(c, one); err != nil {
		return err
	}
	if one[0] != 0 && one[0] != 2 { // Hello or Exception
		return fmt.Errorf("unexpected packet %d", one[0])
	}
	return nil
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// startErrorsContain reports whether this run's part of the error log contains text.
func (s *Server) startErrorsContain(text string) bool {
	data, err := os.ReadFile(s.errLogPath)
	if err != nil || int64(len(data)) < s.errLogStart {
		return false
	}
	return bytes.Contains(data[s.errLogStart:], []byte(text))
}

func (s *Server) tail() string {
	var parts [][]byte
	for _, p := range []string{s.logPath, s.errLogPath, filepath.Join(s.cfg.Dir, "log", "stdout.log")} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		parts = append(parts, []byte("== "+p+" ==\n"), data)
	}
	return string(bytes.Join(parts, nil))
}

func findBinary(bin string) (string, error) {
	if bin != "" {
		p, err := exec.LookPath(bin)
		if err != nil {
			return "", fmt.Errorf("chserver: binary %q: %w: %w", bin, ErrBinaryNotFound, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/clickhouse-server", "/usr/local/bin/clickhouse-server"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("chserver: %w", ErrBinaryNotFound)
}

// freePorts finds n distinct free TCP ports on host by listening on port 0 with all of them
// open at once; ports listed in avoid are never returned.
func freePorts(host string, n int, avoid ...int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("chserver: find a free port on %s: %w", host, err)
		}
		ls = append(ls, l)
		if p := l.Addr().(*net.TCPAddr).Port; !slices.Contains(avoid, p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func serverConfig(cfg Config, usersPath, logPath string) []byte {
	d := cfg.Dir
	return fmt.Appendf(nil, `<?xml version="1.0"?>
<!-- Generated by ponixclickhouse/chserver. -->
<yandex>
    <logger>
        <level>information</level>
        <log>%s</log>
        <errorlog>%s</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>%s</listen_host>
    <tcp_port>%d</tcp_port>
    <http_port>%d</http_port>
%s    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>%s/data/</path>
    <tmp_path>%s/tmp/</tmp_path>
    <user_files_path>%s/user_files/</user_files_path>
    <format_schema_path>%s/format_schemas/</format_schema_path>
    <users_config>%s</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
`, esc(logPath), esc(filepath.Join(d, "log", "clickhouse-server.err.log")), esc(cfg.ListenHost),
		cfg.TCPPort, cfg.HTTPPort, tlsConfig(cfg),
		esc(d), esc(d), esc(d), esc(d), esc(usersPath))
}

// tlsConfig is the configuration of the TLS port, empty without Config.TLS.
func tlsConfig(cfg Config) string {
	t := cfg.TLS
	if t == nil {
		return ""
	}
	verify, ca := "none", ""
	if t.CAFile != "" {
		verify = "strict"
		ca = "\n            <caConfig>" + esc(t.CAFile) + "</caConfig>"
	}
	return fmt.Sprintf(`    <tcp_port_secure>%d</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>%s</certificateFile>
            <privateKeyFile>%s</privateKeyFile>%s
            <verificationMode>%s</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
`, cfg.TCPSecurePort, esc(t.CertFile), esc(t.KeyFile), ca, verify)
}

func usersConfig(cfg Config) []byte { return usersConfigProfile(cfg, false) }

func usersConfigProfile(cfg Config, readOnly bool) []byte {
	profile := "default"
	if readOnly {
		profile = "readonly"
	}
	return fmt.Appendf(nil, `<?xml version="1.0"?>
<!-- Generated by ponixclickhouse/chserver. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
        <readonly>
            <max_memory_usage>4000000000</max_memory_usage>
            <readonly>1</readonly>
        </readonly>
    </profiles>
    <users>
        <%s>
            <password>%s</password>
            <networks><ip>::/0</ip></networks>
            <profile>`+profile+`</profile>
            <quota>default</quota>
        </%s>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`, cfg.User, esc(cfg.Password), cfg.User)
}
